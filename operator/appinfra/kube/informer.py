"""List, then watch, one resource type in a thread: the cache's feed for the types
appinfra reads at volume (target Deployments and Ingresses, and our children).

kopf streams the four appinfra kinds. For these seven types it did the same, and
its per-event machinery (a deep copy of every body, handler causes, per-object
memories and worker tasks) was about half of the operator's CPU at a thousand
profiles, for events that only update the cache and enqueue a key. This is the
informer pattern of client-go's reflector, reduced to what we need:

- LIST, then WATCH from the list's resourceVersion (with bookmarks), so no change
  between the two is missed and nothing deleted in between stays behind as a ghost;
- the list is delivered as events too, page by page; cached objects missing from it
  are delivered as DELETED (a relist after a long outage sees deletions it never
  watched);
- "410 Gone" (the resourceVersion is too old) relists; a dropped connection or an
  unreachable API server retries the watch from the last resourceVersion after a
  capped, jittered backoff. Nothing here ever gives up.

Each object passes through `transform` (the cache's Store.shrink) as soon as it is
parsed, in this thread: what the cache would not keep (another owner's object that
carries our label, a ConfigMap's values) is dropped before it reaches the loop or
piles up in a batch. An object the transform drops is delivered as DELETED by name,
so one that stops being ours leaves the cache. LIST responses are read as they arrive
and parsed one item at a time (ListReader), so a page of 250 one-MiB objects never
sits in memory at once: only one raw object does, and what the transform keeps.

An optional type (another project's CRD, Resource.optional) may not be served: its
LIST gets 404. The informer then delivers an empty, complete list (so start-up does not
wait for it, and what the cache held of it is DELETED), reports the type absent through
`served`, and lists again every `recheck` seconds until the API appears, when it reports
it served. A watch that gets 404 (the CRD was deleted) lists again, which finds that out.

Events are handed to the event loop in batches (a LIST page, or what one read from
the stream holds), where the handlers update the cache and enqueue reconciles; the
thread waits until a batch is handled, so a slow loop slows the reading instead of
piling parsed objects up in memory.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from appinfra.api.names import Obj
from appinfra.kube.backoff import Backoff
from appinfra.kube.client import Kube, KubeError
from appinfra.kube.resources import Resource

log = logging.getLogger("appinfra.informer")

Event = dict[str, Any]  # {"type": ADDED|MODIFIED|DELETED, "object": {...}}
Deliver = Callable[[list[Event], bool], None]  # (events, listed: the list is complete)
Transform = Callable[[Obj], Obj | None]  # what to keep of an object; None: nothing

WATCH_SECONDS = 300  # server-side timeout of one watch request; then it is renewed
READ_TIMEOUT = WATCH_SECONDS + 30  # bookmarks come about once a minute on a quiet stream
PAGE = 250  # objects per LIST page
LIST_READ_TIMEOUT = 60  # seconds without a byte of a LIST page: the server is gone


_INCOMPLETE = object()  # a value not complete in the buffer yet


class ListReader:
    """A LIST response parsed as it arrives: each element of "items" on its own, the
    other top-level fields (kind, metadata with continue and resourceVersion) into
    `head`. At most one unparsed item is buffered.

    A small state machine over the top-level object; every value is parsed by the json
    module's own decoder (raw_decode), so JSON is never re-implemented here. A value cut
    off at the end of the buffer fails to parse and is retried once the buffer has
    doubled, so a 1 MiB item read in 64 KiB chunks is parsed a handful of times, not
    sixteen.
    """

    _WS = re.compile(r"[ \t\n\r]*")

    def __init__(self) -> None:
        self.head: Obj = {}
        self._decoder = json.JSONDecoder()
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._buf = ""
        self._pos = 0
        self._chunks: list[str] = []
        self._pending = 0  # characters in _chunks
        self._retry_at = 0  # buffered characters needed before parsing again
        self._state = "start"  # start, key, colon, value, items, end
        self._key = ""

    def feed(self, chunk: bytes) -> list[Obj]:
        """The items completed by `chunk`."""
        text = self._text.decode(chunk)
        self._chunks.append(text)
        self._pending += len(text)
        if len(self._buf) - self._pos + self._pending < self._retry_at:
            return []
        self._buf = self._buf[self._pos :] + "".join(self._chunks)
        self._pos, self._chunks, self._pending, self._retry_at = 0, [], 0, 0
        items: list[Obj] = []
        while self._step(items):
            pass
        return items

    def close(self) -> list[Obj]:
        """After the last chunk: the items still buffered (then `head` is complete). A
        truncated body raises ValueError."""
        self._buf = self._buf[self._pos :] + "".join(self._chunks) + self._text.decode(b"", True)
        self._pos, self._chunks, self._pending, self._retry_at = 0, [], 0, 0
        items: list[Obj] = []
        while self._step(items):
            pass
        if self._state != "end" or self._buf[self._pos :].strip():
            raise ValueError("the LIST response ended early")
        return items

    def _step(self, items: list[Obj]) -> bool:
        """One step; False when more input is needed (or the object ended)."""
        buf = self._buf
        pos = self._WS.match(buf, self._pos).end()  # type: ignore[union-attr]
        self._pos = pos
        if pos >= len(buf) or self._state == "end":
            return False
        char = buf[pos]
        state = self._state
        if state == "start":
            self._expect(char, "{")
            self._pos, self._state = pos + 1, "key"
        elif state == "key" and char in ",}":
            self._pos = pos + 1
            self._state = "end" if char == "}" else "key"
        elif state == "key":
            key = self._value(pos)
            if key is _INCOMPLETE:
                return False
            self._key, self._state = str(key), "colon"
        elif state == "colon":
            self._expect(char, ":")
            self._pos, self._state = pos + 1, "value"
        elif state == "value" and self._key == "items":
            if char == "n":  # "items": null
                if self._value(pos) is _INCOMPLETE:
                    return False
                self._state = "key"
            else:
                self._expect(char, "[")
                self._pos, self._state = pos + 1, "items"
        elif state == "value":
            value = self._value(pos)
            if value is _INCOMPLETE:
                return False
            self.head[self._key], self._state = value, "key"
        elif char in ",]":  # state "items"
            self._pos = pos + 1
            if char == "]":
                self._state = "key"
        else:
            item = self._value(pos)
            if item is _INCOMPLETE:
                return False
            items.append(item)
            self._buf, self._pos = buf[self._pos :], 0  # drop what is parsed
        return True

    def _value(self, pos: int) -> Any:
        """The JSON value at `pos` (and moves past it), or _INCOMPLETE."""
        try:
            value, end = self._decoder.raw_decode(self._buf, pos)
        except json.JSONDecodeError:
            self._retry_at = 2 * (len(self._buf) - self._pos)
            return _INCOMPLETE
        if end >= len(self._buf) and not isinstance(value, (dict, list, str)):
            self._retry_at = len(self._buf) - self._pos + 1  # a number may go on
            return _INCOMPLETE
        self._pos = end
        return value

    @staticmethod
    def _expect(char: str, wanted: str) -> None:
        if char != wanted:
            raise ValueError(f"unexpected {char!r} in a LIST response, wanted {wanted!r}")


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


def vanished(cached: Iterable[tuple[str, str]], listed: set[tuple[str, str]]) -> list[Event]:
    """DELETED events for the cached objects a fresh LIST no longer has: deleted while
    nobody watched (a long outage), or never really there (a stale cache)."""
    return [
        {"type": "DELETED", "object": {"metadata": {"namespace": ns, "name": name}}}
        for ns, name in cached
        if (ns, name) not in listed
    ]


def split_lines(buffer: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines of a watch stream (one JSON event each) and the unfinished rest."""
    data = buffer + chunk
    *lines, rest = data.split(b"\n")
    return [line for line in lines if line.strip()], rest


class Informer:
    def __init__(
        self,
        kube: Kube,
        res: Resource,
        deliver: Deliver,
        cached_keys: Callable[[], list[tuple[str, str]]],
        *,
        namespace: str | None = None,
        label_selector: str = "",
        page: int = PAGE,
        transform: Transform | None = None,
        served: Callable[[bool], None] | None = None,
        recheck: float = 30.0,
    ) -> None:
        self.kube = kube
        self.res = res
        self.namespace = namespace
        self.selector = label_selector
        self.page = page
        self._deliver = deliver
        self._cached_keys = cached_keys
        self._transform = transform
        self._served = served
        self._served_last: bool | None = None  # what `served` was last told
        self._recheck = recheck
        self._stop = threading.Event()
        self._version = ""
        scope = f" in {namespace}" if namespace else ""
        self.name = f"{res.plural}{scope}"
        self._thread = threading.Thread(target=self._run, name=f"watch-{res.plural}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops after the current read (a watch stream may be idle until its timeout;
        the thread is a daemon, so it never holds up the process's exit)."""
        self._stop.set()

    def _query(self) -> dict[str, str]:
        return {"labelSelector": self.selector} if self.selector else {}

    def _run(self) -> None:
        backoff = Backoff(base=1.0, cap=30.0)
        while not self._stop.is_set():
            try:
                if not self._version:
                    self._list()
                self._watch()
                backoff.reset()
            except Gone:
                log.info("watch of %s expired (410 Gone): listing again", self.name)
                self._version = ""
            except KubeError as exc:
                if not (self.res.optional and exc.status == 404):
                    self._retry(backoff, exc)
                elif self._version:  # the CRD went away while watched: list again
                    self._version = ""
                else:
                    self._absent()
            except Exception as exc:  # any failure: log and retry; an informer never dies
                self._retry(backoff, exc)

    def _retry(self, backoff: Backoff, exc: Exception) -> None:
        delay = backoff.next_delay()
        level = logging.WARNING if backoff.failures.get(None, 0) > 1 else logging.INFO
        log.log(level, "watch of %s failed (%s); retrying in %.1fs",
                self.name, _describe(exc), delay)  # fmt: skip
        self._stop.wait(delay)

    def _absent(self) -> None:
        """The optional type is not served: nothing of it exists (what the cache held is
        gone with its CRD); say so, and look again in `recheck` seconds."""
        self._report_served(False)  # before the delivery, which may start the first reconciles
        cached = [key for key in self._cached_keys() if self.namespace in (None, key[0])]
        self._deliver(vanished(cached, set()), True)
        log.debug("%s is not served (CRD %s not installed); looking again in %.0fs",
                  self.name, self.res.crd_name, self._recheck)  # fmt: skip
        self._stop.wait(self._recheck)

    def _report_served(self, served: bool) -> None:
        """Tell `served` when the answer changes (the first answer included)."""
        if self._served is not None and self._served_last is not served:
            self._served_last = served
            self._served(served)

    def _list(self) -> None:
        """One consistent snapshot, in pages, each delivered (and handled: delivery waits
        for the handlers) before the next is fetched, so at most a page of transformed
        objects (and one raw one) is alive at once; then DELETED for the cached objects
        it no longer has. Unchanged objects are recognised by the handlers as echoes and
        cost no reconcile."""
        cached = [key for key in self._cached_keys() if self.namespace in (None, key[0])]
        listed: set[tuple[str, str]] = set()
        token = ""
        while True:
            query = {**self._query(), "limit": str(self.page)}
            if token:
                query["continue"] = token
            events: list[Event] = []
            head = self._list_page(query, events, listed)
            token = head["metadata"].get("continue") or ""
            version = head["metadata"]["resourceVersion"]
            if token:
                self._deliver(events, False)
                continue
            self._report_served(True)  # before the delivery: its reconciles may need the type
            self._deliver(events + vanished(cached, listed), True)
            break
        self._version = version
        log.debug("listed %d %s", len(listed), self.name)

    def _list_page(
        self, query: dict[str, str], events: list[Event], listed: set[tuple[str, str]]
    ) -> Obj:
        """One LIST page, read as it arrives: each item is transformed as soon as it is
        parsed (into `events`, its key into `listed`). Returns the rest of the response."""
        try:
            resp = self.kube.stream(
                self.res.path(self.namespace), query, LIST_READ_TIMEOUT, self.res.plural, "GET"
            )
        except KubeError as exc:
            if exc.status == 410:  # the snapshot expired between pages: start over
                raise Gone() from None
            raise
        reader = ListReader()

        def add(items: list[Obj]) -> None:
            while items:  # popped: each raw item is freed once transformed
                kept = self._kept(items.pop(0))
                if kept is not None:
                    meta = kept["metadata"]
                    listed.add((meta.get("namespace", ""), meta["name"]))
                    events.append({"type": "ADDED", "object": kept})

        try:
            for chunk in resp.stream(65536, decode_content=True):
                add(reader.feed(chunk))
            add(reader.close())
        finally:
            resp.release_conn()
        return reader.head

    def _watch(self) -> None:
        query = {
            **self._query(),
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        resp = self.kube.stream(self.res.path(self.namespace), query, READ_TIMEOUT, self.res.plural)
        buffer = b""
        try:
            for chunk in resp.stream(65536, decode_content=True):
                lines, buffer = split_lines(buffer, chunk)
                events = [e for e in map(self._event, lines) if e is not None]
                if events:
                    self._deliver(events, False)
                if self._stop.is_set():
                    return
        finally:
            resp.release_conn()

    def _event(self, line: bytes) -> Event | None:
        """One line of the stream: an event to deliver, or None (bookmark). Keeps the
        resourceVersion to resume from."""
        event: Event = json.loads(line)
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise KubeError(
                int(obj.get("code") or 0), str(obj.get("reason")), str(obj.get("message"))
            )
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._version = version
        if kind == "BOOKMARK":
            return None
        kept = self._kept(obj)
        if kept is None:
            meta = obj.get("metadata") or {}
            gone = {"namespace": meta.get("namespace", ""), "name": meta.get("name", "")}
            return {"type": "DELETED", "object": {"metadata": gone}}
        return {"type": kind, "object": kept}

    def _kept(self, obj: Obj) -> Obj | None:
        """The object typed (list items, and some watch objects, come without kind and
        apiVersion) and transformed."""
        obj.setdefault("apiVersion", self.res.api_version)
        obj.setdefault("kind", self.res.kind)
        return obj if self._transform is None else self._transform(obj)


def _describe(exc: Exception) -> str:
    if isinstance(exc, KubeError):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"[:300]
