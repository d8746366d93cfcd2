"""Verification of the hash chain: finds changed, deleted, inserted and reordered entries and names them.

The chain holds three kinds of entry (decision records, admin audit events, shadow decisions), stored in
three tables but numbered by one ``seq``. Each entry carries ``prev_hash`` (the ``record_hash`` of the entry
before it, whatever its kind) and ``record_hash = sha256(prev_hash + canonical content)``. The chain starts
at the genesis hash, or at the latest purge checkpoint (the hash of the last purged entry), and ends at the
chain-head row that every append updates in the same transaction. Verification is a streaming pass over the
three tables merged by ``seq`` that only confirms the chain is intact; when it is not, a second pass rebuilds
the chain from the hash links to say exactly which entries were changed, deleted, inserted or moved, naming
each by its kind and id (``decision_id …``, ``event_id …``, ``shadow_id …``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.records.model import ENTRY_DECISION, ENTRY_EVENT, ENTRY_SHADOW

CHANGED = "changed"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
BROKEN_LINK = "broken_link"


@dataclass(frozen=True)
class ChainLink:
    """What verification needs of one stored row; ``content_hash`` is recomputed from the row's content.

    ``entry`` is the kind of entry (``decision``, ``event`` or ``shadow``) and ``entry_id`` its id."""

    seq: int
    entry_id: str
    prev_hash: str
    record_hash: str
    content_hash: str
    entry: str = ENTRY_DECISION
    #: the sha256 of the reason texts document a decision record names (payload schema version 4), else None
    reason_texts: str | None = None

    @property
    def decision_id(self) -> str | None:
        """The decision_id of a decision record's row (None for other entries)."""
        return self.entry_id if self.entry == ENTRY_DECISION else None


@dataclass(frozen=True)
class ChainAnchor:
    """Where the chain must start (genesis or the latest purge checkpoint) and end (the chain head)."""

    base_seq: int
    base_hash: str
    head_seq: int
    head_hash: str


@dataclass(frozen=True)
class ChainProblem:
    """One finding; ``seq`` is the first entry concerned, ``entry`` its kind (``decision``, ``event``, ``shadow``)
    and ``entry_id`` its id; both are None when the entry is gone (a deleted row cannot say what it was)."""

    kind: str
    seq: int
    entry_id: str | None
    detail: str
    entry: str | None = ENTRY_DECISION

    @property
    def decision_id(self) -> str | None:
        """The decision_id when the entry concerned is a decision record, else None."""
        return self.entry_id if self.entry == ENTRY_DECISION else None

    def describe(self) -> str:
        """One line naming the entry (``seq 4 decision_id …``, ``seq 5 event_id …``, ``seq 6 shadow_id …``)."""
        who = f"seq {self.seq}" + (f" {self.entry}_id {self.entry_id}" if self.entry_id else "")
        return f"{self.kind.upper()}: {who}: {self.detail}"


def _problem(kind: str, link: ChainLink, detail: str) -> ChainProblem:
    return ChainProblem(kind, link.seq, link.entry_id, detail, link.entry)


@dataclass(frozen=True)
class ChainReport:
    """Result of :meth:`DecisionStore.verify_chain`."""

    records_checked: int  # every entry checked, of all three kinds
    checkpoint_seq: int
    checkpoint_hash: str
    head_seq: int
    head_hash: str
    problems: tuple[ChainProblem, ...]
    events_checked: int = 0
    shadows_checked: int = 0

    @property
    def ok(self) -> bool:
        """True when no entry was changed, deleted, inserted or reordered."""
        return not self.problems

    def summary(self) -> str:
        """One line for logs and the CLI (the split by kind only when the chain holds events or shadows)."""
        state = "OK" if self.ok else f"BROKEN ({len(self.problems)} problems)"
        checked = f"{self.records_checked} records checked"
        if self.events_checked or self.shadows_checked:
            decisions = self.records_checked - self.events_checked - self.shadows_checked
            checked = (
                f"{self.records_checked} entries checked ({decisions} decisions, {self.events_checked} audit events, "
                f"{self.shadows_checked} shadow decisions)"
            )
        return (
            f"chain {state}: {checked} after checkpoint seq {self.checkpoint_seq}; "
            f"head seq {self.head_seq} hash {self.head_hash}"
        )


@dataclass(frozen=True)
class PurgeReport:
    """Result of :meth:`DecisionStore.purge_before`."""

    cutoff: datetime
    purged_records: int  # decision records; the events and shadows of the purged prefix are counted apart
    checkpoint_seq: int
    checkpoint_hash: str
    purged_events: int = 0
    purged_shadows: int = 0
    #: seq of the latest control event when it stopped the purge (it holds the serving state and is never purged).
    held_at_seq: int | None = None


class ChainScan:
    """Streaming check that the chain is perfectly intact; O(1) memory."""

    def __init__(self, anchor: ChainAnchor) -> None:
        self.anchor = anchor
        self.records = 0
        self.counts = {ENTRY_DECISION: 0, ENTRY_EVENT: 0, ENTRY_SHADOW: 0}
        self._expected_seq = anchor.base_seq + 1
        self._prev_hash = anchor.base_hash
        self._intact = True

    def feed(self, link: ChainLink) -> None:
        """Check one row, in seq order."""
        self.records += 1
        self.counts[link.entry] = self.counts.get(link.entry, 0) + 1
        if link.seq != self._expected_seq or link.prev_hash != self._prev_hash or link.content_hash != link.record_hash:
            self._intact = False
        self._expected_seq = link.seq + 1
        self._prev_hash = link.record_hash

    @property
    def intact(self) -> bool:
        """True when every row fed so far chains correctly and the last one is the chain head."""
        return (
            self._intact and self._expected_seq - 1 == self.anchor.head_seq and self._prev_hash == self.anchor.head_hash
        )


def analyse_chain(links: Sequence[ChainLink], anchor: ChainAnchor) -> list[ChainProblem]:
    """Every problem of a chain, naming the entries concerned (``links`` in seq order, all kinds merged)."""
    problems: list[ChainProblem] = []
    in_range: list[ChainLink] = []
    for link in links:
        if link.seq <= anchor.base_seq:
            problems.append(_problem(INSERTED, link, f"stored at or below the purge checkpoint seq {anchor.base_seq}"))
        elif link.seq > anchor.head_seq:
            problems.append(_problem(INSERTED, link, f"stored beyond the chain head seq {anchor.head_seq}"))
        else:
            in_range.append(link)

    for link in in_range:
        if link.content_hash != link.record_hash:
            problems.append(_problem(CHANGED, link, "content does not match its record_hash"))

    present = {link.seq for link in in_range}
    problems.extend(_missing(present, anchor))

    # Two tables can each hold a row at one seq (a forged one beside the genuine one): the head is fine if either is it.
    at_head = [link for link in in_range if link.seq == anchor.head_seq]
    if at_head and all(link.record_hash != anchor.head_hash for link in at_head):
        problems.append(_problem(CHANGED, at_head[0], "record_hash differs from the one the chain head recorded"))

    problems.extend(_link_problems(in_range, present, anchor))
    problems.sort(key=lambda p: (p.seq, p.kind))
    return problems


def _missing(present: set[int], anchor: ChainAnchor) -> Iterable[ChainProblem]:
    start: int | None = None
    for seq in range(anchor.base_seq + 1, anchor.head_seq + 2):
        gone = seq <= anchor.head_seq and seq not in present
        if gone and start is None:
            start = seq
        elif not gone and start is not None:
            detail = "record is missing" if seq - 1 == start else f"records seq {start}..{seq - 1} are missing"
            yield ChainProblem(DELETED, start, None, detail, None)
            start = None


def _link_problems(links: Sequence[ChainLink], present: set[int], anchor: ChainAnchor) -> list[ChainProblem]:
    """Rebuild the chain from its hash links; report forks, breaks and entries out of order."""
    problems: list[ChainProblem] = []
    by_hash = {link.record_hash: i for i, link in enumerate(links)}
    children: dict[str, list[int]] = defaultdict(list)
    for i, link in enumerate(links):
        children[link.prev_hash].append(i)
    visited: set[int] = set()

    def continues(i: int) -> bool:
        return links[i].record_hash in children or links[i].record_hash == anchor.head_hash

    def walk(first: int) -> list[int]:
        segment = [first]
        visited.add(first)
        while True:
            candidates = [i for i in children.get(links[segment[-1]].record_hash, []) if i not in visited]
            if not candidates:
                return segment
            # Two entries claiming the same predecessor: the genuine one is the one the chain continues from.
            candidates.sort(key=lambda i: (not continues(i), links[i].seq))
            chosen, forks = candidates[0], candidates[1:]
            for i in forks:
                visited.add(i)
                problems.append(
                    _problem(
                        INSERTED, links[i], f"forks the chain: chains from the same record as seq {links[chosen].seq}"
                    )
                )
            segment.append(chosen)
            visited.add(chosen)

    segments: list[list[int]] = []
    roots = sorted(children.get(anchor.base_hash, []), key=lambda i: (not continues(i), links[i].seq))
    if roots:
        segments.append(walk(roots[0]))
        for i in roots[1:]:
            visited.add(i)
            problems.append(
                _problem(
                    INSERTED, links[i], f"forks the chain: chains from the checkpoint like seq {links[roots[0]].seq}"
                )
            )

    for i, link in enumerate(links):
        if i in visited or link.prev_hash == anchor.base_hash or link.prev_hash in by_hash:
            continue
        # An orphan: its prev_hash names no stored entry.
        segment = walk(i)
        segments.append(segment)
        if link.seq - 1 > anchor.base_seq and link.seq - 1 not in present:
            continue  # explained by the deleted entry (entries) just before it
        if len(segment) == 1 and not continues(i):
            problems.append(_problem(INSERTED, link, "neither chains from nor is chained to any record"))
        elif link.seq == anchor.base_seq + 1:
            problems.append(_problem(BROKEN_LINK, link, "prev_hash does not match the genesis/checkpoint hash"))
        else:
            problems.append(
                _problem(
                    BROKEN_LINK,
                    link,
                    f"prev_hash matches no stored record: seq {link.seq - 1} was altered and re-hashed, "
                    "or records before it were removed and the rest renumbered",
                )
            )

    for i, link in enumerate(links):
        if i not in visited:
            problems.append(_problem(INSERTED, link, "is not reachable along the chain"))

    for segment in segments:
        stored = [links[i].seq for i in segment]
        for i, expected in zip(segment, sorted(stored), strict=True):
            if links[i].seq != expected:
                problems.append(
                    _problem(
                        REORDERED,
                        links[i],
                        f"stored at seq {links[i].seq} but its hash chain places it at seq {expected}",
                    )
                )
    return problems
