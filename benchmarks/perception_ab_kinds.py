"""Perception A/B through genfill's own eval job, one mask kind at a time: every method on the same first n
faces64 test images under the same holes (mask seed 1234), both axes per kind (PSNR, SSIM; LPIPS, FID and KID
with a bootstrap spread over test images), diversity and calibration of K fills for the models that draw
several. Each kind's `eval.json` lands in OUT/eval_<kind>/ when that kind is done, and a kind already there is
read back, not re-run (a long run on a shared CPU can stop and resume); the peers' Inception features and
scores go to genfill's per-protocol cache, so `genfill eval` reuses them.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/perception_ab_kinds.py -c runs/sampler-faces64 \
        -c runs/unet-demo -c biharmonic -c patchmatch -c telea -n 1000 --samples 8 --boot 50 \
        --work /tmp/ab --out benchmarks/results/perception_ab_exemplar

`--blend B` scores every sampler with exemplar blend B (`genfill eval --blend`; its row is NAME-B).
`--merge DIR` (repeatable) adds the methods of another such work folder's eval_<kind>/eval.json, when it has
that kind, to the table: methods evaluated in separate runs (a family trained later, a kind added later) join
one table only when the protocol (data, split, n, holes, mask seed) is the same, which is checked.

Writes OUT.json and OUT.md (the kinds done so far)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from genfill.config import EVAL_MASKS
from genfill.evaljob import evaluate_specs, load_eval
from perception_ab import markdown, write  # the same tables as the one-process A/B


def run_kind(specs: list[str], kind: str, n: int, samples: int, boot: int, work: Path, blend: str | None = None
             ) -> dict:
    path = work / f"eval_{kind}" / "eval.json"
    if not path.is_file():
        t0 = time.time()
        evaluate_specs(specs, path.parent, masks=kind, n=n, fid=True, samples=samples or None, fid_bootstrap=boot,
                       device="cpu", report=False, verbose=True, blend=blend)
        print(f"{kind}: {time.time() - t0:.0f} s", flush=True)
    doc, _ = load_eval(path)
    return doc


def merged(doc: dict, kind: str, others: list[Path]) -> dict:
    """`doc` with the methods of the other work folders' evals of `kind` added (same protocol, or an error)."""
    for folder in others:
        path = folder / f"eval_{kind}" / "eval.json"
        if not path.is_file():
            continue
        other, _ = load_eval(path)
        if other["protocol"] != doc["protocol"]:
            raise SystemExit(f"{path}: another protocol than {kind}'s run ({other['protocol']} != {doc['protocol']})")
        for name, e in other["methods"].items():
            if name in doc["methods"]:
                raise SystemExit(f"{path}: method {name!r} is in two evals of {kind}")
            doc["methods"][name] = e
        fid = doc.setdefault("timing", {}).setdefault("fid", {})
        fid["seconds"] = fid.get("seconds", 0.0) + other.get("timing", {}).get("fid", {}).get("seconds", 0.0)
    return doc


def rows_of(doc: dict, kind: str) -> dict:
    """{method: perception_ab's row} of one kind's eval.json: both axes, FID/KID with their spread, plural."""
    out = {}
    for name, e in doc["methods"].items():
        s, f = e["summary"]["mask"][kind], e.get("by_mask", {}).get(kind, {})
        row = {m: s.get(m) for m in ("psnr", "ssim", "lpips", "diversity")}
        row.update({k: v for k, v in f.items() if k.startswith(("fid", "kid"))})
        row.update({k: v for k, v in e.get("plural", {}).get("by_mask", {}).get(kind, {}).items()
                    if k in ("coverage90", "unc_corr")})
        out[f"{name} ({e['kind']})"] = row
    return out


def verdict(rows: dict, judged: str, kinds: list[str], apart: tuple[str, ...] = ()) -> list[str]:
    """Markdown lines: per kind, where method `judged` (a row name's start) stands on FID against the best other
    row, in units of the larger of the two bootstrap stds: "lowest by X" or "behind the best by X". Rows whose
    names start with one of `apart` (variants of the judged method) are not among the others."""
    mine = [name for name in rows if name.startswith(judged)]
    if len(mine) != 1:
        raise SystemExit(f"--judge {judged!r} names {len(mine)} rows of the table (need exactly one)")
    out = [f"## Verdict on FID: {mine[0]}" + (" (against every row but the judged ones)" if apart else ""), ""]
    for kind in kinds:
        me = rows[mine[0]].get(kind, {})
        others = [(r[kind]["fid"], r[kind].get("fid_std") or 0.0, name) for name, r in rows.items()
                  if name != mine[0] and not name.startswith(apart) and r.get(kind, {}).get("fid") is not None]
        if me.get("fid") is None or not others:
            continue
        fid, std, name = min(others)
        spread = max(me.get("fid_std") or 0.0, std)
        gap = fid - me["fid"]
        where = "lowest" if gap > 0 else "behind the best"
        out.append(f"- {kind}: {me['fid']:.2f} against {name}'s {fid:.2f}: {where} by {abs(gap):.2f} = "
                   f"{abs(gap) / spread:.1f} x the larger bootstrap std ({spread:.2f})" if spread else
                   f"- {kind}: {me['fid']:.2f} against {name}'s {fid:.2f}: {where} by {abs(gap):.2f}")
    return out + [""]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", action="append", required=True, metavar="RUN|PEER", help="a method (repeatable)")
    ap.add_argument("--kinds", default=",".join(EVAL_MASKS))
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=8, help="K fills per image of models that draw several (0: none)")
    ap.add_argument("--boot", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--work", default="runs/perception_ab", help="where each kind's eval.json goes")
    ap.add_argument("--merge", action="append", default=[], metavar="DIR",
                    help="another work folder whose evals of the same kinds join the table (repeatable)")
    ap.add_argument("--judge", action="append", default=[], metavar="NAME",
                    help="add a verdict on FID for the row whose name starts with NAME (repeatable)")
    ap.add_argument("--blend", default=None, help="every sampler draws with this exemplar blend (genfill eval --blend: "
                                                   "its row is named NAME-BLEND)")
    ap.add_argument("--out", default="benchmarks/results/perception_ab_exemplar")
    a = ap.parse_args(argv)
    if a.seed != 1234:
        raise SystemExit("the A/B's protocol is mask seed 1234 (genfill eval's default)")
    kinds = [k for k in a.kinds.split(",") if k]
    doc = {"command": " ".join(["python benchmarks/perception_ab_kinds.py", *(sys.argv[1:] if argv is None else argv)]),
           "note": "One genfill eval per mask kind (benchmarks/perception_ab_kinds.py); the kinds not listed "
                   "below did not finish in the session that ran it.",
           "protocol": {"data": "faces64 test", "n": a.n, "seed": a.seed, "kinds": [], "k": a.samples,
                        "fid_n": a.n, "fid_kinds": [], "boot": a.boot}, "fid_seconds": 0.0, "rows": {}}
    for kind in kinds:
        ev = merged(run_kind(a.c, kind, a.n, a.samples, a.boot, Path(a.work), a.blend), kind, [Path(d) for d in a.merge])
        doc["protocol"]["kinds"].append(kind)
        doc["protocol"]["fid_kinds"].append(kind)
        doc["fid_seconds"] += ev.get("timing", {}).get("fid", {}).get("seconds", 0.0)
        for name, row in rows_of(ev, kind).items():
            doc["rows"].setdefault(name, {})[kind] = row
        doc["verdict"] = [line for judged in a.judge for line in verdict(doc["rows"], judged, doc["protocol"]["kinds"],
                                                                          tuple(j for j in a.judge if j != judged))]
        write(doc, Path(a.out))  # after every kind: what is done is on disk
    print(markdown(doc))


if __name__ == "__main__":
    main()
