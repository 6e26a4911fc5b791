"""Benchmark: local images, from a folder of photos to the provider.

What is measured, in one run, each command in a child process of its own (wall time from
spawn to exit; peak RSS from `os.wait4` for exactly that child):

- load, baseline: `veo-batch load` of N rows (default 10,000) whose images are https links,
  into a fresh SQLite file; its time, peak RSS and database size;
- load, local photos: the same N rows naming P distinct photo files (default 100, noisy
  1920x1080 JPEGs of about 1.5 MB, as a camera makes them) by relative path: every file is
  checked (read, hashed, decoded) once; the same figures, as ratios to the baseline;
- run, each mode: `veo-batch run --batch ... --mock --no-wait` of R of those rows (default
  1,000) with VEO_IMAGE_MODE=data-uri, then url (uploads to moto's standalone S3 server,
  started here): wall time, peak RSS, and for url the objects in the bucket (the uploads).

The photos and databases live in a temporary directory. Results are printed and written to
`bench/out/images-<time>.json`.

    python bench/images.py
    python bench/images.py --rows 2000 --photos 20 --run-rows 200
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3
import httpx
from PIL import Image

from bench.harness.processes import REPO
from bench.harness.results import OUT_DIR

VEO = str(REPO / ".venv" / "bin" / "veo-batch")
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def timed(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run one command; its wall seconds and peak RSS in MB (it must succeed)."""
    started = time.monotonic()
    child = subprocess.Popen(
        args, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.decode()}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "output": out.decode()}


def make_photos(folder: Path, count: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for n in range(count):
        picture = Image.effect_noise((1920, 1080), 40 + n % 20).convert("RGB")
        path = folder / f"p{n:03}.jpg"
        picture.save(path, quality=90)
        total += path.stat().st_size
    return total


def write_jobs(path: Path, rows: int, image: Any) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("id,prompt,model,images,aspect_ratio\n")
        for n in range(rows):
            out.write(f"r{n},a slow push in on product {n},veo3.1,{image(n)},16:9\n")


def s3_server() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            return server, url
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit("moto's S3 server did not start") from None
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=100)
    parser.add_argument("--run-rows", type=int, default=1_000)
    options = parser.parse_args()
    results: dict[str, Any] = {"rows": options.rows, "photos": options.photos}
    with tempfile.TemporaryDirectory(prefix="veo-bench-images-") as scratch:
        root = Path(scratch)
        photo_bytes = make_photos(root / "shop" / "photos", options.photos)
        results["photo_mb"] = photo_bytes / 2**20
        links, local = root / "shop" / "links.csv", root / "shop" / "local.csv"
        write_jobs(links, options.rows, lambda n: f"https://img.example.com/p{n % 100:03}.jpg")
        write_jobs(local, options.rows, lambda n: f"photos/p{n % options.photos:03}.jpg")
        for name, path in (("links", links), ("local", local)):
            database = root / f"{name}.db"
            env = {"VEO_DATABASE_URL": f"sqlite:///{database}", "VEO_DATA_DIR": str(root / "d")}
            subprocess.run([VEO, "db", "upgrade"], env={**os.environ, **env}, check=True)
            figures = timed([VEO, "load", str(path), "--batch", "b"], env, root)
            figures["database_mb"] = database.stat().st_size / 2**20
            figures.pop("output")
            results[f"load_{name}"] = figures
        server, endpoint = s3_server()
        try:
            bucket = "veo-bench"
            boto3.client("s3", endpoint_url=endpoint, **_keys()).create_bucket(Bucket=bucket)
            run_jobs = root / "shop" / "run.csv"
            write_jobs(run_jobs, options.run_rows, lambda n: f"photos/p{n % options.photos:03}.jpg")
            for mode in ("data-uri", "url"):
                env = {
                    "VEO_DATABASE_URL": f"sqlite:///{root / f'run-{mode}.db'}",
                    "VEO_IMAGE_MODE": mode,
                    "VEO_S3_URL": f"s3://{bucket}/{mode}",
                    "VEO_S3_ENDPOINT": endpoint,
                    **S3_ENV,
                }
                figures = timed([VEO, "run", str(run_jobs), "--mock", "--no-wait"], env, root)
                figures.pop("output")
                listed = boto3.client("s3", endpoint_url=endpoint, **_keys()).list_objects_v2(
                    Bucket=bucket, Prefix=f"{mode}/"
                )
                figures["objects_in_bucket"] = listed.get("KeyCount", 0)
                results[f"run_{mode}"] = figures
        finally:
            server.terminate()
            server.wait(10)
    report(results)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"images-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


def report(results: dict[str, Any]) -> None:
    base, local = results["load_links"], results["load_local"]
    print(
        f"{results['rows']:,} rows, {results['photos']} distinct photos "
        f"({results['photo_mb']:,.0f} MB on disk)"
    )
    print("| load | links (baseline) | local photos | ratio |")
    print("|---|---|---|---|")
    for key, unit in (("seconds", "s"), ("peak_rss_mb", "MB"), ("database_mb", "MB")):
        ratio = local[key] / base[key]
        print(f"| {key} | {base[key]:.2f} {unit} | {local[key]:.2f} {unit} | x{ratio:.2f} |")
    for mode in ("data-uri", "url"):
        run = results[f"run_{mode}"]
        print(
            f"run --no-wait, {mode}: {run['seconds']:.1f} s, peak RSS {run['peak_rss_mb']:.0f} MB, "
            f"objects in the bucket {run['objects_in_bucket']}"
        )


if __name__ == "__main__":
    main()
