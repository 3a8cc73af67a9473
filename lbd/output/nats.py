"""Shipping to NATS JetStream: `--output nats://HOST:PORT/SUBJECT` (nats-py, the `lbd[nats]` extra).

    with NatsExporter("nats://10.0.0.5:4222/lbd.events.web1", fmt="json", spool_dir="/var/lib/lbd/spool"):
        ...   # write_batch(batch) per batch (see lbd.output.exporter for delivery and the spool)

Each message is published to SUBJECT with JetStream and counts as delivered on its PubAck.
Headers: `Nats-Msg-Id` (the message id: JetStream drops a message it has already stored within its
duplicate window, 2 minutes by default, so a resend after a lost acknowledgement is stored once),
`Lbd-Events` (the number of events), `Content-Type` (application/x-ndjson or
application/vnd.apache.arrow.stream).  When no stream captures SUBJECT, one is created on the first
connection, named after the subject (`lbd.events.web1` -> `LBD_EVENTS_WEB1`), file storage, the
server's default limits: create your own (retention, replicas, limits) to choose them.
A fleet publishes to one subject per host (or one shared subject) and a consumer reads them all
from the stream (README: "Collecting a fleet's events through NATS").
"""
from __future__ import annotations

import asyncio
import errno
import re
from urllib.parse import urlsplit

from lbd.output.exporter import Exporter, Message
from lbd.output.writer import OutputError

__all__ = ["NatsExporter", "parse_url", "stream_name"]


def parse_url(url: str) -> tuple[str, str]:
    """"nats://HOST:PORT/SUBJECT" -> (server URL, subject); OutputError naming the problem."""
    u = urlsplit(url)
    subject = u.path.lstrip("/")
    if u.scheme != "nats" or not u.hostname or not subject or not re.fullmatch(r"[A-Za-z0-9_\-.]+", subject) \
            or subject.startswith(".") or subject.endswith(".") or ".." in subject:
        raise OutputError(errno.EINVAL, f"output {url!r}: expected nats://HOST:PORT/SUBJECT "
                                        "(a subject of letters, digits, '_', '-' and '.')")
    try:
        port = u.port or 4222
    except ValueError:
        raise OutputError(errno.EINVAL, f"output {url!r}: the port is not a number 0-65535") from None
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    return f"nats://{host}:{port}", subject


def stream_name(subject: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", subject).upper()


class NatsExporter(Exporter):
    """An Exporter publishing to NATS JetStream (see the module docstring)."""

    def __init__(self, url: str, fmt: str = "json", limit: int = 0, *, ack_timeout: float = 5.0,
                 connect_timeout: float = 2.0, **kw):
        try:
            import nats  # noqa: F401
        except ImportError:
            raise OutputError(errno.ENOSYS, "the nats:// output needs nats-py: pip install 'lbd[nats]'") from None
        self.server, self.subject = parse_url(url)
        self.stream = stream_name(self.subject)
        self.ack_timeout = ack_timeout
        self.connect_timeout = connect_timeout
        self._nc = None
        self._js = None
        super().__init__(url, fmt, limit, **kw)
        self.publish_timeout = 2 * ack_timeout + connect_timeout + 1

    async def _connect(self) -> None:
        """A new connection (lbd reconnects by itself: nats-py's reconnection and its buffer are
        off, so a lost server fails the publishes at once and they go to the spool)."""
        import nats
        from nats.js.errors import NotFoundError

        await self._disconnect()
        self._nc = await asyncio.wait_for(
            nats.connect(self.server, connect_timeout=self.connect_timeout, allow_reconnect=False,
                         name="lbd", error_cb=self._quiet, disconnected_cb=self._quiet_cb,
                         closed_cb=self._quiet_cb),
            self.connect_timeout + 1)
        self._js = self._nc.jetstream(timeout=self.ack_timeout)
        try:
            await self._js.find_stream_name_by_subject(self.subject)
        except NotFoundError:
            await self._js.add_stream(name=self.stream, subjects=[self.subject])
        if self._nc.max_payload:
            self.max_message_bytes = self._nc.max_payload

    async def _quiet(self, e) -> None:
        """nats-py's error callback: failures show as unacknowledged publishes, counted there."""

    async def _quiet_cb(self) -> None:
        pass

    async def _publish(self, messages: list[Message]) -> list[bool]:
        js = self._js

        async def one(m: Message) -> bool:
            try:
                await js.publish(self.subject, m.payload, timeout=self.ack_timeout,
                                 headers={"Nats-Msg-Id": m.id, "Lbd-Events": str(m.events),
                                          "Content-Type": m.content_type})
                return True
            except Exception:                          # noqa: BLE001 - not acknowledged: spooled
                return False

        return list(await asyncio.gather(*(one(m) for m in messages)))

    async def _disconnect(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 5)
            except Exception:                          # noqa: BLE001 - it is gone either way
                pass
