"""Writes the Prometheus config for this run: the shipped file with the ports in use."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_PORTS = {
    "gateway": 8000,
    "users": 8001,
    "wallets": 8002,
    "transactions": 8003,
    "payment_gateway": 8004,
    "notifications": 8005,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--alertmanager", default="127.0.0.1:59094")
    args = parser.parse_args()
    text = (HERE / "prometheus.yml").read_text()
    for name, port in DEFAULT_PORTS.items():
        actual = os.environ.get(f"PAYSYS_{name.upper()}_PORT", str(port))
        text = text.replace(f'"127.0.0.1:{port}"', f'"127.0.0.1:{actual}"')
    text = text.replace('"127.0.0.1:59094"', f'"{args.alertmanager}"')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    rules = args.out.parent / "rules"
    shutil.rmtree(rules, ignore_errors=True)
    shutil.copytree(HERE / "rules", rules, ignore=shutil.ignore_patterns("*_test.yml"))


if __name__ == "__main__":
    main()
