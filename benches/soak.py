#!/usr/bin/env python3
"""Soak test: the release router on PostgreSQL under mixed traffic for a while (10 minutes by default),
then a check that nothing was lost or counted twice and that memory stayed flat.

Traffic, all at once: click workers on keep-alive connections; a postback worker reporting FTDs for
clicks it saw (some repeated, some with a wrong secret); an admin worker changing weights, creating
and deactivating offers; weight recalculations every ~36 s (CRON_INTERVAL_HOURS=0.01) plus manual
ones. Every 10 s the router's resident memory and /health are sampled.

At the end the router is stopped with SIGTERM and the database must hold exactly one row per 302 the
workers received, and exactly one FTD per accepted FTD postback. Memory is "flat" when the last
sample is within 10% (or 8 MiB) of the highest sample of the first minute.

Usage: benches/soak.py [SECONDS]   (needs PostgreSQL at 127.0.0.1:5432 with trust auth, psql, and a
`cargo build --release`; exits 1 on any loss, double count or memory growth)
"""

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "casino-router")
TOKEN = "soak-admin-token-0123456789"
PG = "postgres://postgres@127.0.0.1:5432"


def psql(database, sql):
    out = subprocess.run(["psql", f"{PG}/{database}", "-Atqc", sql], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive HTTP connection, reopened if the server closes it."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, auth=False):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if auth:
            headers["Authorization"] = f"Bearer {TOKEN}"
        data = json.dumps(body) if body is not None else None
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                return response.status, response.getheader("Location"), response.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 600
    database = f"casino_soak_{int(time.time())}"
    psql("postgres", f"CREATE DATABASE {database}")
    journal = tempfile.mkdtemp(prefix="casino-soak-journal-")
    port = free_port()
    env = dict(os.environ, DATABASE_URL=f"{PG}/{database}", HOST="127.0.0.1", PORT=str(port), ADMIN_TOKEN=TOKEN,
               JOURNAL_DIR=journal, CRON_INTERVAL_HOURS="0.01", MIN_CLICKS_FOR_EV="50", RUST_LOG="warn")
    router = subprocess.Popen([BINARY], env=env, stderr=subprocess.PIPE, text=True)
    stop = threading.Event()
    lock = threading.Lock()
    tally = {"302": 0, "click_other": 0, "ftd_accepted": set(), "ftd_duplicate": 0, "forbidden": 0,
             "postback_other": 0, "admin": 0, "recalcs": 0}
    seen = []  # (click_id, secret) of recent clicks
    samples = []
    try:
        for _ in range(100):
            try:
                if Client(port).request("GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        admin = Client(port)
        offers = {}
        for n in range(5):
            status, _, body = admin.request("POST", "/admin/offers", {
                "name": f"Soak {n}", "casino_url": f"https://soak{n}.example/r?btag={{click_id}}",
                "weight": 1.0 + n}, auth=True)
            assert status == 201, body
            offer = json.loads(body)
            offers[f"soak{n}.example"] = offer["postback_secret"]

        def clicker():
            client = Client(port)
            while not stop.is_set():
                status, location, _ = client.request("GET", "/click?source=soak&campaign=c1")
                with lock:
                    if status == 302:
                        tally["302"] += 1
                        url = urllib.parse.urlsplit(location)
                        click_id = urllib.parse.parse_qs(url.query)["btag"][0]
                        if random.random() < 0.02:
                            seen.append((click_id, offers.get(url.hostname)))
                            del seen[:-2000]
                    else:
                        tally["click_other"] += 1

        def postbacker():
            client = Client(port)
            while not stop.is_set():
                time.sleep(0.01)
                with lock:
                    if not seen:
                        continue
                    click_id, secret = random.choice(seen)
                if secret is None:
                    continue
                wrong = random.random() < 0.05
                query = urllib.parse.urlencode({"click_id": click_id, "event": "ftd", "payout": "120.50",
                                                "secret": "wrong-secret-0000" if wrong else secret})
                status, _, body = client.request("GET", f"/postback?{query}")
                with lock:
                    if status == 200 and json.loads(body)["status"] == "success":
                        assert click_id not in tally["ftd_accepted"], f"FTD accepted twice for {click_id}"
                        tally["ftd_accepted"].add(click_id)
                    elif status == 200:
                        tally["ftd_duplicate"] += 1
                    elif status == 403:
                        tally["forbidden"] += 1
                    else:
                        tally["postback_other"] += 1

        def administrator():
            client = Client(port)
            ids = [json.loads(client.request("GET", "/admin/offers", auth=True)[2])[i]["id"] for i in range(5)]
            step = 0
            while not stop.wait(2):
                step += 1
                client.request("PATCH", f"/admin/offers/{random.choice(ids)}", {"weight": random.uniform(0.5, 5)},
                               auth=True)
                if step % 5 == 0:
                    status, _, body = client.request("POST", "/admin/offers", {
                        "name": f"Temp {step}", "casino_url": "https://temp.example/", "active": False}, auth=True)
                    temp = json.loads(body)["id"]
                    client.request("DELETE", f"/admin/offers/{temp}", auth=True)
                if step % 15 == 0 and client.request("POST", "/admin/update-weights", auth=True)[0] == 200:
                    with lock:
                        tally["recalcs"] += 1
                client.request("GET", "/admin/stats", auth=True)
                with lock:
                    tally["admin"] += 1

        threads = [threading.Thread(target=clicker) for _ in range(4)]
        threads += [threading.Thread(target=postbacker), threading.Thread(target=administrator)]
        for thread in threads:
            thread.start()
        started = time.time()
        monitor = Client(port)
        while time.time() - started < seconds:
            time.sleep(10)
            health = json.loads(monitor.request("GET", "/health")[2])
            samples.append((time.time() - started, rss_kib(router.pid), health["queue_depth"]))
            with lock:
                print(f"t={samples[-1][0]:5.0f}s rss={samples[-1][1] / 1024:6.1f} MiB queue={health['queue_depth']:5d} "
                      f"302s={tally['302']} ftds={len(tally['ftd_accepted'])} written={health['clicks_written']}",
                      flush=True)
        stop.set()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        router.send_signal(signal.SIGTERM)
        exit_code = router.wait(timeout=60)

    rows = int(psql(database, "SELECT count(*) FROM clicks"))
    ftd_rows = int(psql(database, "SELECT count(*) FROM ftd_events"))
    ftd_clicks = int(psql(database, "SELECT count(DISTINCT click_id) FROM ftd_events"))
    rollup = int(psql(database, "SELECT coalesce(sum(clicks), 0) FROM click_rollup_hourly"))
    early = max((rss for t, rss, _ in samples if t <= 60), default=0)
    last = samples[-1][1] if samples else 0
    flat = last <= max(early * 1.10, early + 8 * 1024)
    print()
    print(f"duration            {seconds} s, router exit code {exit_code}")
    print(f"clicks              {tally['302']} redirected, {rows} rows, {rollup} in the hourly rollup, "
          f"{tally['click_other']} refused")
    print(f"FTD postbacks       {len(tally['ftd_accepted'])} accepted, {ftd_rows} rows ({ftd_clicks} clicks), "
          f"{tally['ftd_duplicate']} duplicates, {tally['forbidden']} wrong secret, {tally['postback_other']} other")
    print(f"admin               {tally['admin']} rounds, {tally['recalcs']} manual recalculations, "
          f"{psql(database, 'SELECT count(DISTINCT run_at) FROM weight_history')} recalculations in all")
    print(f"resident memory     first minute max {early / 1024:.1f} MiB, last {last / 1024:.1f} MiB "
          f"({'flat' if flat else 'GROWING'})")
    ok = (exit_code == 0 and rows == tally["302"] == rollup and ftd_rows == ftd_clicks == len(tally["ftd_accepted"])
          and tally["click_other"] == 0 and flat)
    print("RESULT              " + ("zero loss, no double count, flat memory" if ok else "FAILED"))
    psql("postgres", f"DROP DATABASE {database} WITH (FORCE)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
