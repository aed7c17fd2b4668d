"""What several commands print of a posterior."""

from ..correction.importance import khat_threshold

__all__ = ["print_importance"]

LISTED = 10  # untrusted participants named one per line; the rest counted


def print_importance(tree):
    """How many participants' posteriors passed the check against the exact posterior, by
    method, and which did not, with the reason."""
    if "importance" not in tree.children:
        return
    checks = tree["importance"]
    trusted, methods = checks["trusted"].values, checks["method"].values
    counts = ", ".join(f"{method} {int((methods == method).sum())}" for method in dict.fromkeys(methods))
    weighted = checks["proposals"].values if "proposals" in checks else checks.sizes["draw"]  # the network's draws
    above = int((checks["flow_khat"].values > khat_threshold(weighted)).sum())
    print(f"trusted {int(trusted.sum())}/{trusted.size} ({counts}); the network's own draws: median k-hat "
          f"{float(checks['flow_khat'].median()):.2f}, {above} above the threshold")
    untrusted = list(zip(checks["participant"].values[~trusted], checks["reason"].values[~trusted]))
    for participant, reason in untrusted[:LISTED]:
        print(f"  not trusted: {participant}: {reason}")
    if len(untrusted) > LISTED:
        print(f"  ... and {len(untrusted) - LISTED} more (the output's importance group: trusted, reason)")
    if untrusted and (methods == "flow").all():
        print("the network's draws alone are checked (--raw): without it, infer corrects every participant with "
              "the exact posterior")
