"""Generation workers. The database is the queue: a job is claimed by one atomic conditional UPDATE, so any
number of workers in any number of processes (the API's own threads, `hallmark worker` on other machines) share
it safely, on SQLite and PostgreSQL alike. A worker's running jobs send a heartbeat; a job whose heartbeat stops
(its process died) goes back to the queue."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import timedelta

from api.context import Hallmark
from api.generation import run
from registry import AuditLog, Generations
from registry.clock import utcnow

log = logging.getLogger("hallmark.jobs")

HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(seconds=120)


class WorkerPool:
    def __init__(self, hm: Hallmark, threads: int, *, poll_seconds: float = 1.0) -> None:
        self.hm = hm
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self.threads):
            thread = threading.Thread(target=self._work, args=(f"{self.name}:{number}",), daemon=True,
                                      name=f"hallmark-worker-{number}")
            thread.start()
            self._threads.append(thread)
        if self.threads:
            heartbeat = threading.Thread(target=self._heartbeat, daemon=True, name="hallmark-heartbeat")
            heartbeat.start()
            self._threads.append(heartbeat)

    def notify(self) -> None:
        """A job was queued: wake an idle worker now instead of at its next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            try:
                claimed = self._claim_one(worker)
            except Exception:  # a database hiccup must not kill the worker thread
                log.exception("worker %s could not poll the queue", worker)
                claimed = None
            if claimed is None:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                continue
            with self._running_lock:
                self._running.add(claimed)
            try:
                run(self.hm, claimed, worker=worker)
            except Exception:
                log.exception("worker %s: generation %s crashed", worker, claimed)
            finally:
                with self._running_lock:
                    self._running.discard(claimed)

    def _claim_one(self, worker: str) -> str | None:
        with self.hm.db.session() as session:
            generations = Generations(session)
            for generation_id in generations.queued_ids(limit=5):
                if generations.claim(generation_id, worker):
                    return generation_id
        return None

    def requeue_stale(self, running: list[str]) -> int:
        """Heartbeat this pool's running jobs and put back in the queue those whose worker stopped, logging each
        requeue (the job, the worker whose attempt died, and who requeued it) in the same transaction."""
        with self.hm.db.session() as session:
            generations = Generations(session)
            generations.touch(running)
            requeued = generations.requeue_stale(utcnow() - STALE_AFTER)
            audit = AuditLog(session)
            for generation_id, dead_worker in requeued:
                audit.append("generation.requeued", subject=generation_id, worker=dead_worker,
                             requeued_by=self.name, stale_after_seconds=int(STALE_AFTER.total_seconds()))
        return len(requeued)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._running_lock:
                    running = list(self._running)
                requeued = self.requeue_stale(running)
                if requeued:
                    log.warning("requeued %d generation(s) whose worker stopped", requeued)
                    self._wake.set()
            except Exception:
                log.exception("heartbeat failed")
