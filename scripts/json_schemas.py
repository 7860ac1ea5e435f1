"""Write (default) or check (--check) the JSON Schema files under schemas/json/, one per topic
message and API document, generated from the pydantic models (``schemas.json_schemas``)."""

import sys
from pathlib import Path

from schemas.json_schemas import documents, render

OUT = Path(__file__).resolve().parents[1] / "schemas" / "json"


def stale() -> list[str]:
    """Files missing, different or left over; [] when the directory matches the models."""
    want = {f"{name}.schema.json": render(doc) for name, doc in documents().items()}
    have = {p.name: p.read_text() for p in OUT.glob("*.schema.json")} if OUT.exists() else {}
    return sorted(n for n in want.keys() | have.keys() if want.get(n) != have.get(n))


if __name__ == "__main__":
    if "--check" in sys.argv:
        bad = stale()
        sys.exit(f"stale JSON Schema files {bad}: run scripts/json_schemas.py" if bad else 0)
    OUT.mkdir(exist_ok=True)
    for p in OUT.glob("*.schema.json"):
        p.unlink()
    for name, doc in documents().items():
        (OUT / f"{name}.schema.json").write_text(render(doc))
