"""The README's checkpoint table, from the registry and the published file lists (`models/published/`).

    python scripts/checkpoint_table.py            # print it
    python scripts/checkpoint_table.py --write    # replace it in README.md (between its markers)

Per model: the checkpoint and the commit it is pinned to, whether its file list was read from a stored
Hub page or inferred, and the download and memory on a CPU (fp32 files; the 3-8B language models and unCLIP
in bfloat16) and on a GPU (`fp16` files where published). tests/test_published_checkpoints.py fails when
README.md holds another table than this script writes.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BEGIN, END = "<!-- checkpoint table: scripts/checkpoint_table.py --write -->", "<!-- end of checkpoint table -->"


def table() -> str:
    return f"{tab_table()}\n\nPer model:\n\n{model_table()}"


def tab_table() -> str:
    """Per tab, the models its default request loads, together."""
    os.environ.setdefault("PP_MODELS", "hub")
    import models
    from demos import DEMOS

    cache = figures_cache(safety_checker=False)
    rows = ["| tab (default request) | models | CPU download | CPU memory | GPU download | GPU memory |",
            "|---|---|---|---|---|---|"]
    for demo in DEMOS:
        if not demo.checkpoints:
            continue
        figures = [[cache.published_figures(models.REGISTRY[n], d) for n in demo.checkpoints]
                   for d in ("cpu", "cuda")]
        (cpu_files, cpu_memory), (gpu_files, gpu_memory) = ([sum(f[i] for f in device) for i in (0, 1)]
                                                            for device in figures)
        rows.append(f"| {demo.title} | {', '.join(demo.checkpoints)} | {cpu_files / 1e9:.2f} GB | "
                    f"{cpu_memory / 2**30:.1f} GiB | {gpu_files / 1e9:.2f} GB | {gpu_memory / 2**30:.1f} GiB |")
    return "\n".join(rows)


def figures_cache(safety_checker: bool):
    """A cache that only sizes published checkpoints (whatever this process's settings say)."""
    import models
    from models.cache import ModelCache
    from models.settings import Settings

    return ModelCache(models.REGISTRY, Settings(profile="hub", safety_checker=safety_checker))


def model_table() -> str:
    """Per registered model (a ControlNet without the base it shares), with the safety checker's cost."""
    import models
    from models.hub import published

    rows = ["| model | checkpoint | file list | CPU download | CPU memory | GPU download | GPU memory | licence |",
            "|---|---|---|---|---|---|---|---|"]
    checker_on, plain = figures_cache(safety_checker=True), figures_cache(safety_checker=False)
    for name, spec in models.REGISTRY.items():
        repo = published(spec.checkpoint) if "/" in spec.checkpoint and "://" not in spec.checkpoint else None
        where = (f"`{repo.repo}` @ `{repo.commit[:7]}`" if repo and repo.commit else
                 f"`{repo.repo}` @ `main`" if repo else f"`{spec.checkpoint.rsplit('/', 1)[-1]}`")
        listing = ("seen" if repo.verified else "**unverified**") if repo else "outside the Hub"
        rows.append(_row(name, where, listing, plain, spec, repo))
        if repo and any(path.startswith("safety_checker/") for path in repo.files):
            rows.append(_row(f"{name} + safety checker", where, listing, checker_on, spec, repo))
    return "\n".join(rows)


def _row(name, where, listing, cache, spec, repo) -> str:
    (cpu_files, cpu_memory), (gpu_files, gpu_memory) = (cache.published_figures(spec, d) for d in ("cpu", "cuda"))
    licence = (repo.licence if repo else spec.licence) or "see its page"
    return (f"| {name} | {where} | {listing} | {cpu_files / 1e9:.2f} GB | {cpu_memory / 2**30:.1f} GiB | "
            f"{gpu_files / 1e9:.2f} GB | {gpu_memory / 2**30:.1f} GiB | {licence} |")


def readme_with_table(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    if parser.parse_args().write:
        path = ROOT / "README.md"
        path.write_text(readme_with_table(path.read_text()))
    else:
        print(table())


if __name__ == "__main__":
    main()
