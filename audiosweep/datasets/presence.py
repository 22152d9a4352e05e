"""Whether a downloadable dataset is in its folder, and the refusal of a download nobody asked for. Without torch:
``sweep run`` checks its runs' data folders with it before starting any."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..download import incomplete
from ..errors import ConfigError
from . import DatasetDef, dataset_entry

TITLES = {"esc50": "ESC-50", "esc10": "ESC-10", "urbansound8k": "UrbanSound8K", "gtzan": "GTZAN",
          "dcase2017_scenes": "DCASE 2017 scenes"}


def title(name: str) -> str:
    """The dataset's name as its authors write it, for messages."""
    return TITLES.get(name, f"dataset {name}")


def needs_download(entry: DatasetDef, data_dir: Path) -> bool:
    """Whether the downloadable dataset ``entry`` lacks its marker in ``data_dir``, or a download of its several
    archives there was interrupted."""
    return not (data_dir / entry.download_marker).exists() or (bool(entry.download_urls) and incomplete(data_dir))


def check_data_dir(cfg: Config) -> None:
    """Refuse a download that was not asked for, before any work: into an explicit ``data_dir`` that does not exist
    (a typo would fetch hundreds of MB into it) unless ``download`` is true, and any with ``download`` false.
    Datasets of the user's own clips (folder, csv) are checked when they are listed."""
    entry = dataset_entry(cfg.dataset_name)
    data_dir = Path(cfg.data_root).expanduser()
    if entry.download_marker is None or cfg.download is True or not needs_download(entry, data_dir):
        return
    if cfg.download is False:
        raise ConfigError(f"download false: {title(entry.name)} is not (completely) in {data_dir}; give the data_dir "
                          f"that holds it (with {entry.download_marker}), or pass --download true to fetch it there")
    if cfg.data_dir is not None and not data_dir.exists():
        raise ConfigError(f"data_dir {data_dir} does not exist: check the path, or pass --download true to fetch "
                          f"the dataset ({title(entry.name)}) there")
