#!/usr/bin/env python3
"""Brokers side by side, on loopback, under the same loads.

Setups:
  bridge   two mosquitto brokers joined by a bridge (topic # both 1)
  cluster  two project brokers: a core-broker and a worker-broker
  rmqtt    one rmqtt broker alone (`mqtt-cluster-broker --standalone`:
           rmqtt's own router and shared subscriptions, the node idle)
  single   one mosquitto alone

Loads (100-byte payloads, 4 publisher and 4 subscriber connections, each
subscriber taking every message; on two-broker setups publishers are on
one broker and subscribers on the other, the single-broker references take
both on their one broker):
  qos0 offered   QoS 0 offered at 200 000 msg/s: nothing acknowledges
                 QoS 0, so it is an offered load and the figure is what
                 arrived (and what was lost)
  qos1 lossless  QoS 1, the highest paced rate at which nothing is lost and
                 the subscribers keep up (received >= 95% of the offered
                 deliveries per second: the last arrival lags the last
                 publish by at most 5% of the publishing time); found by
                 doubling from 2 000 msg/s, then halving the gap three
                 times. A PUBACK only says the first broker has the
                 message, so "as fast as acknowledged" overruns every
                 broker's subscriber queues: the search finds the rate a
                 broker sustains
  qos1 1000/s    QoS 1 paced at 1 000 msg/s for four times as long: the
                 latency figures
  fan-out        the QoS 1 search again, subscribers on both brokers

Every load runs against freshly started brokers, so one load's backlog
never slows the next.

Needs the Debian packages mosquitto and mosquitto-clients, and python3; it
installs nothing. Run from the repository's root:
  examples/rmqtt-broker/bench/side-by-side.py [--seconds N] [--setups a,b]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

MANIFEST = "examples/rmqtt-broker/Cargo.toml"
SECRET = "side-by-side-secret-long-enough"
PUBLISHERS = 4
SUBSCRIBERS = 4


def say(text):
    print(text, file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def wait_port(port, process):
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"the broker for port {port} exited ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Setup:
    """Brokers of one setup, started fresh for every load."""

    def __init__(self, name, work, broker):
        self.name = name
        self.work = work
        self.broker = broker
        self.processes = []

    def spawn(self, label, argv):
        log = open(os.path.join(self.work, f"{self.name}-{label}.log"), "ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def mosquitto(self, label, port, bridge_to=None):
        conf = os.path.join(self.work, f"{self.name}-{label}.conf")
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            # Queue limits raised to the project broker's (see its README).
            "max_queued_messages 100000",
            "max_inflight_messages 128",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if bridge_to:
            lines += [
                f"connection bridge-{label}",
                f"address 127.0.0.1:{bridge_to}",
                "topic # both 1",
                "cleansession true",
                "bridge_protocol_version mqttv311",
            ]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        wait_port(port, self.spawn(label, ["mosquitto", "-c", conf]))

    def project(self, label, mqtt, api, core, core_api, *flags):
        conf = os.path.join(self.work, f"{self.name}-{label}.yaml")
        with open(conf, "w") as f:
            f.write(
                f"core: {'true' if core else 'false'}\n"
                f"host: 127.0.0.1\nport: {api}\nnodeName: {label}\n"
                f"clusters: [http://127.0.0.1:{core_api}]\nsecret: {SECRET}\n"
            )
        argv = [self.broker, "--config", conf, "--mqtt", f"127.0.0.1:{mqtt}", *flags]
        wait_port(mqtt, self.spawn(label, argv))

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []


SETUPS = {
    # name: (start, publish-on, subscribe-on, fan-out subscribe-on)
    "bridge": (
        lambda s: (s.mosquitto("a", 18831), s.mosquitto("b", 18832, bridge_to=18831)),
        "127.0.0.1:18831",
        "127.0.0.1:18832",
        "127.0.0.1:18831,127.0.0.1:18832",
    ),
    "cluster": (
        lambda s: (
            # One thread each, as each mosquitto has: two brokers that each
            # spread over both CPUs spend them switching between each other.
            s.project("core", 18841, 18941, True, 18941, "--threads", "1"),
            # The worker-broker takes clients only once its routing table
            # arrived, so its MQTT port opening means the cluster formed.
            s.project("worker", 18842, 18942, False, 18941, "--threads", "1"),
        ),
        "127.0.0.1:18841",
        "127.0.0.1:18842",
        "127.0.0.1:18841,127.0.0.1:18842",
    ),
    "rmqtt": (
        # Alone on the host, rmqtt does best on every CPU.
        lambda s: s.project("alone", 18851, 18951, True, 18951, "--standalone"),
        "127.0.0.1:18851",
        "127.0.0.1:18851",
        "127.0.0.1:18851",
    ),
    "single": (
        lambda s: s.mosquitto("single", 18861),
        "127.0.0.1:18861",
        "127.0.0.1:18861",
        "127.0.0.1:18861",
    ),
}


def bench_once(setup, bench, publish_on, subscribe_on, qos, rate, seconds):
    """Starts the setup's brokers, runs one load, stops them; the report or
    None when the load generator failed (its stderr is in the work dir)."""
    start = SETUPS[setup.name][0]
    try:
        start(setup)
        argv = [
            bench, "--publish-on", publish_on, "--subscribe-on", subscribe_on,
            "--publishers", str(PUBLISHERS), "--subscribers", str(SUBSCRIBERS),
            "--qos", str(qos), "--rate", str(rate), "--size", "100",
            "--duration", f"{seconds}s", "--drain", "2s",
        ]
        with open(os.path.join(setup.work, f"{setup.name}-bench.log"), "ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=log,
                                  timeout=seconds + 120)
        lines = done.stdout.decode().strip().splitlines()
        if done.returncode != 0 or not lines:
            return None
        return json.loads(lines[-1])
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as error:
        say(f"  {setup.name}: {error}")
        return None
    finally:
        setup.stop()


def keeps_up(report, rate):
    if report is None or report["lost"] or report["duplicated"]:
        return False
    return report["received_per_s"] >= 0.95 * rate * SUBSCRIBERS


def search(setup, bench, publish_on, subscribe_on, seconds, label):
    """The highest QoS 1 rate kept up with: doubling from 2 000 msg/s until
    a rate fails, then three halvings of the gap."""
    best, best_report, failed = None, None, None
    rate = 2000
    while failed is None and rate <= 512000:
        report = bench_once(setup, bench, publish_on, subscribe_on, 1, rate, seconds)
        say(f"  {setup.name} {label} {rate}/s: {brief(report)}")
        if keeps_up(report, rate):
            best, best_report, rate = rate, report, rate * 2
        else:
            failed = rate
    if best is None or failed is None:
        return best, best_report
    for _ in range(3):
        rate = (best + failed) // 2
        report = bench_once(setup, bench, publish_on, subscribe_on, 1, rate, seconds)
        say(f"  {setup.name} {label} {rate}/s: {brief(report)}")
        if keeps_up(report, rate):
            best, best_report = rate, report
        else:
            failed = rate
    return best, best_report


def brief(report):
    if report is None:
        return "failed"
    return (f"received {report['received_per_s']:.0f}/s lost {report['lost']} "
            f"dup {report['duplicated']} p99 {report['latency']['p99_us'] / 1000:.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="publishing time per load")
    parser.add_argument("--setups", default="bridge,cluster,rmqtt,single")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if not shutil.which("mosquitto"):
        say("side-by-side: needs the Debian packages mosquitto and mosquitto-clients")
        say("  (apt-get install mosquitto mosquitto-clients); it installs nothing")
        return 2
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", MANIFEST,
                    "--bins"], check=True)
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps", "--manifest-path", MANIFEST],
        check=True, stdout=subprocess.PIPE).stdout)
    release = os.path.join(meta["target_directory"], "release")
    broker = os.path.join(release, "mqtt-cluster-broker")
    bench = os.path.join(release, "mqtt-cluster-bench")

    work = tempfile.mkdtemp(prefix="side-by-side-")
    say(f"side-by-side: logs in {work}")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL).stdout.decode().strip()
    say(f"commit {commit or 'unknown'}, {os.cpu_count()} CPUs, "
        f"{subprocess.run(['mosquitto', '-h'], stdout=subprocess.PIPE).stdout.decode().splitlines()[0]}")
    say(f"load average before: {load_average()}")
    rows = []
    setups = []
    # Brokers go down with the script, also on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for name in args.setups.split(","):
            _, publish_on, subscribe_on, fan_out_on = SETUPS[name]
            setup = Setup(name, work, broker)
            setups.append(setup)
            report = bench_once(setup, bench, publish_on, subscribe_on, 0, 200000, args.seconds)
            say(f"  {name} qos0 200000/s offered: {brief(report)}")
            rows.append((name, "qos0 offered 200k/s", 200000, report))
            rate, report = search(setup, bench, publish_on, subscribe_on, args.seconds,
                                  "qos1")
            rows.append((name, "qos1 lossless", rate, report))
            # Latency wants samples: four times the publishing time.
            report = bench_once(setup, bench, publish_on, subscribe_on, 1, 1000,
                                4 * args.seconds)
            say(f"  {name} qos1 1000/s: {brief(report)}")
            rows.append((name, "qos1 1000/s", 1000, report))
            if fan_out_on != subscribe_on:
                rate, report = search(setup, bench, publish_on, fan_out_on, args.seconds,
                                      "fan-out")
                rows.append((name, "fan-out qos1", rate, report))
    finally:
        for setup in setups:
            setup.stop()
    say(f"load average after: {load_average()}")

    print(f"{'setup':<8} {'load':<20} {'msg/s in':>9} {'received/s':>11} {'lost':>8} "
          f"{'dup':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for setup, load, rate, r in rows:
        if r is None:
            print(f"{setup:<8} {load:<20} {'-':>9} failed (logs in {work})")
            continue
        lat = r["latency"]
        print(f"{setup:<8} {load:<20} {r['sent_per_s']:>9.0f} {r['received_per_s']:>11.0f} "
              f"{r['lost']:>8} {r['duplicated']:>5} {lat['p50_us'] / 1000:>8.2f} "
              f"{lat['p99_us'] / 1000:>8.2f} {lat['max_us'] / 1000:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            for setup, load, rate, r in rows:
                f.write(json.dumps({"setup": setup, "load": load, "rate": rate,
                                    "report": r}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
