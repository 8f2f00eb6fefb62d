"""Writes the Prometheus config for this run: the shipped file with the ports in use.

Options for test instances: a shorter scrape interval, shorter alert `for:` durations,
and extra scrape targets."""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

import yaml

from paysys.kit.settings import RELAY_PORT_OFFSET, RELAYED, SERVICE_PORTS

HERE = Path(__file__).resolve().parent
DEFAULT_PORTS = SERVICE_PORTS  # the processes' defaults, shared with their settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--alertmanager", default="127.0.0.1:19094")
    parser.add_argument("--interval", help="scrape and evaluation interval, e.g. 2s")
    parser.add_argument("--alert-for", help="replace every alert's `for:` (tests only)")
    parser.add_argument("--extra-target", action="append", default=[], help="job=host:port")
    args = parser.parse_args()
    text = (HERE / "prometheus.yml").read_text()
    relays = {}
    for name, port in DEFAULT_PORTS.items():
        actual = os.environ.get(f"PAYSYS_{name.upper()}_PORT", str(port))
        text = text.replace(f'"127.0.0.1:{port}"', f'"127.0.0.1:{actual}"')
        if name in RELAYED:  # its relay process, beside it (KitSettings.relay_port_of)
            relays[name.replace("_", "-")] = f"127.0.0.1:{int(actual) + RELAY_PORT_OFFSET}"
    text = text.replace('"127.0.0.1:19094"', f'"{args.alertmanager}"')
    config = yaml.safe_load(text)
    if args.interval:
        config["global"]["scrape_interval"] = args.interval
        config["global"]["evaluation_interval"] = args.interval
    for scrape in config["scrape_configs"]:
        if (relay := relays.get(scrape["job_name"])) is not None:
            scrape["static_configs"][0]["targets"].append(relay)
    for extra in args.extra_target:
        job, target = extra.split("=", 1)
        for scrape in config["scrape_configs"]:
            if scrape["job_name"] == job:
                scrape["static_configs"].append({"targets": [target], "labels": {"service": job}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(config, sort_keys=False))
    rules = args.out.parent / "rules"
    shutil.rmtree(rules, ignore_errors=True)
    shutil.copytree(HERE / "rules", rules, ignore=shutil.ignore_patterns("*_test.yml"))
    if args.alert_for:
        for path in rules.glob("*.yml"):
            path.write_text(
                re.sub(r"(?m)^(\s+for: ).*$", rf"\g<1>{args.alert_for}", path.read_text())
            )


if __name__ == "__main__":
    main()
