"""A tiny search space with the hybridnas.spaces surface, for search tests
that must not depend on the spaces room's choices (few dims, tiny widths)."""
from __future__ import annotations

from hybridnas.spec import ArchSpec, HeadSpec, StageSpec, StemSpec


class TinySpace:
    name = "tiny"

    def __init__(self, resolution=8, widths=(8, 16), invalid_window=False):
        self.resolution = resolution
        self.widths = tuple(widths)
        self.invalid_window = invalid_window  # offer a window that does not fit (rejections)

    def suggest(self, trial) -> ArchSpec:
        stages = []
        for i in range(2):
            block = trial.suggest_categorical(f"stages.{i}.block", ["mbconv", "transformer"])
            width = trial.suggest_categorical(f"stages.{i}.width", list(self.widths))
            depth = trial.suggest_int(f"stages.{i}.depth", 1, 2)
            extra = {}
            if block == "transformer":
                extra = {"heads": 2, "head_dim": None, "attention": "global"}
                if self.invalid_window and i == 1:
                    extra = {"heads": 3, "head_dim": None, "attention": "global"}
            stages.append(StageSpec(block, depth=depth, width=width, stride=2 if i else 1, **extra))
        return ArchSpec(stem=StemSpec(kind="conv", widths=(8,), kernel=3), stages=tuple(stages),
                        head=HeadSpec())

    def encode(self, spec: ArchSpec) -> dict:
        out = {}
        for i, s in enumerate(spec.stages):
            out.update({f"stages.{i}.block": s.block, f"stages.{i}.width": s.width,
                        f"stages.{i}.depth": s.depth})
        return out

    def references(self, resolution):
        spec = ArchSpec(stem=StemSpec(kind="conv", widths=(8,), kernel=3),
                        stages=(StageSpec("mbconv", depth=1, width=8, stride=1),
                                StageSpec("transformer", depth=1, width=16, stride=2, heads=2,
                                          attention="global")))
        return {"tiny_coatnet": spec.replace(name="tiny_coatnet")}

    def data_params(self, params):
        return {}


def main(argv=None) -> int:
    """Run a tiny search in this process (for tests that kill or resume it):
    ``python search_standin.py '<json SearchConfig options>' [RESUME_DIR]``."""
    import json
    import sys

    from hybridnas import run_search
    from hybridnas.search import SearchConfig

    argv = sys.argv[1:] if argv is None else argv
    options = json.loads(argv[0])
    space = TinySpace(**options.pop("tiny", {}))
    if len(argv) > 1:
        run_search(resume=argv[1], overrides=options, space=space)
    else:
        run_search(SearchConfig(**options), space=space)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
