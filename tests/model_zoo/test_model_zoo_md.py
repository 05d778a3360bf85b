"""MODEL_ZOO.md lists every shipped config once, names only existing configs, and gives
each config the checkpoint that panoptic2/model_zoo/catalog.py publishes for it."""

from __future__ import annotations

import re
from pathlib import Path

from panoptic2.model_zoo import CHECKPOINTS

REPO = Path(__file__).resolve().parents[2]
# A table row whose first cell is a config path in backticks.
_ROW = re.compile(r"^\|\s*`(?P<config>[^`]+\.yaml)`\s*\|(?P<rest>.*)\|\s*$")


def _rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in (REPO / "MODEL_ZOO.md").read_text().splitlines():
        match = _ROW.match(line)
        if match:
            config = match["config"]
            assert config not in rows, f"{config} has two rows"
            rows[config] = [cell.strip() for cell in match["rest"].split("|")]
    return rows


def _shipped() -> set[str]:
    files = [*REPO.glob("configs/**/*.yaml"), *REPO.glob("projects/*/configs/**/*.yaml")]
    return {p.relative_to(REPO).as_posix() for p in files}


def test_every_shipped_config_has_a_row_and_every_row_an_existing_config():
    rows = set(_rows())
    shipped = _shipped()
    assert len(shipped) > 40
    assert sorted(shipped - rows) == [], "configs without a row in MODEL_ZOO.md"
    assert sorted(rows - shipped) == [], "rows naming no shipped config"


def test_rows_have_six_cells_and_the_catalog_checkpoints():
    rows = _rows()
    assert all(len(cells) == 5 for cells in rows.values())  # + the config cell
    by_config = {
        (e.config if e.config.startswith("projects/") else f"configs/{e.config}"): e.checkpoint
        for e in CHECKPOINTS.values()
    }
    for config, cells in rows.items():
        checkpoint = cells[3]
        expected = by_config.get(config)
        assert checkpoint == (f"`{expected}`" if expected else "—"), config
