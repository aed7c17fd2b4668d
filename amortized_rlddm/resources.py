"""Files shipped with the package: the trained networks and the training configs.

The repository keeps them at its top level (``checkpoints/``, ``training_configs/``), which
the package reaches through two links of the same names; the wheel holds them inside the
package. Both places are looked up, the package first, so an installed wheel and a source
checkout (editable install) find the same files.
"""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _shipped_folder(name):
    for folder in (PACKAGE / name, PACKAGE.parent / name):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"the package's {name}/ folder is missing (looked in {PACKAGE} and "
                            f"{PACKAGE.parent}); reinstall amortized_rlddm")


def shipped_checkpoints() -> dict[str, Path]:
    """The shipped networks, name -> checkpoint directory."""
    folder = _shipped_folder("checkpoints")
    return {p.name: p for p in sorted(folder.iterdir()) if (p / "model.keras").is_file()}


def shipped_configs() -> dict[str, Path]:
    """The shipped training configs, name (file stem) -> YAML file."""
    return {p.stem: p for p in sorted(_shipped_folder("training_configs").glob("*.yaml"))}


def path_or_shipped(value: str | Path, shipped: dict[str, Path], exists) -> Path | None:
    """`value` as a path when `exists(path)`, else the shipped file of that name, else None:
    an existing path wins over a name."""
    path = Path(value)
    if exists(path):
        return path
    return shipped.get(str(value))


def config_path(config: str | Path) -> Path:
    """A config given as a YAML path or as a shipped config's name (``"default"``)."""
    shipped = shipped_configs()
    found = path_or_shipped(config, shipped, Path.is_file)
    if found is None:
        raise FileNotFoundError(f"config '{config}' does not exist: it is neither a YAML file nor the name of a "
                                f"shipped config ({', '.join(shipped)})")
    return found
