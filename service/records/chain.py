"""Verification of the hash chain: finds changed, deleted, inserted and reordered records and names them.

Each stored record carries ``prev_hash`` (the ``record_hash`` of the record before it) and
``record_hash = sha256(prev_hash + canonical content)``. The chain starts at the genesis hash, or at
the latest purge checkpoint (the hash of the last purged record), and ends at the chain-head row that
every append updates in the same transaction. Verification is a streaming pass that only confirms the
chain is intact; when it is not, a second pass rebuilds the chain from the hash links to say exactly
which records were changed, deleted, inserted or moved.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

CHANGED = "changed"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
BROKEN_LINK = "broken_link"


@dataclass(frozen=True)
class ChainLink:
    """What verification needs of one stored row; ``content_hash`` is recomputed from the row's content."""

    seq: int
    decision_id: str
    prev_hash: str
    record_hash: str
    content_hash: str


@dataclass(frozen=True)
class ChainAnchor:
    """Where the chain must start (genesis or the latest purge checkpoint) and end (the chain head)."""

    base_seq: int
    base_hash: str
    head_seq: int
    head_hash: str


@dataclass(frozen=True)
class ChainProblem:
    """One finding; ``seq`` is the first record concerned, ``decision_id`` is None when the record is gone."""

    kind: str
    seq: int
    decision_id: str | None
    detail: str

    def describe(self) -> str:
        """One line naming the record."""
        who = f"seq {self.seq}" + (f" decision_id {self.decision_id}" if self.decision_id else "")
        return f"{self.kind.upper()}: {who}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    """Result of :meth:`DecisionStore.verify_chain`."""

    records_checked: int
    checkpoint_seq: int
    checkpoint_hash: str
    head_seq: int
    head_hash: str
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        """True when no record was changed, deleted, inserted or reordered."""
        return not self.problems

    def summary(self) -> str:
        """One line for logs and the CLI."""
        state = "OK" if self.ok else f"BROKEN ({len(self.problems)} problems)"
        return (
            f"chain {state}: {self.records_checked} records checked after checkpoint seq {self.checkpoint_seq}; "
            f"head seq {self.head_seq} hash {self.head_hash}"
        )


@dataclass(frozen=True)
class PurgeReport:
    """Result of :meth:`DecisionStore.purge_before`."""

    cutoff: datetime
    purged_records: int
    checkpoint_seq: int
    checkpoint_hash: str


class ChainScan:
    """Streaming check that the chain is perfectly intact; O(1) memory."""

    def __init__(self, anchor: ChainAnchor) -> None:
        self.anchor = anchor
        self.records = 0
        self._expected_seq = anchor.base_seq + 1
        self._prev_hash = anchor.base_hash
        self._intact = True

    def feed(self, link: ChainLink) -> None:
        """Check one row, in seq order."""
        self.records += 1
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
    """Every problem of a chain, naming the records concerned (``links`` in seq order)."""
    problems: list[ChainProblem] = []
    in_range: list[ChainLink] = []
    for link in links:
        if link.seq <= anchor.base_seq:
            problems.append(
                ChainProblem(
                    INSERTED,
                    link.seq,
                    link.decision_id,
                    f"stored at or below the purge checkpoint seq {anchor.base_seq}",
                )
            )
        elif link.seq > anchor.head_seq:
            problems.append(
                ChainProblem(
                    INSERTED, link.seq, link.decision_id, f"stored beyond the chain head seq {anchor.head_seq}"
                )
            )
        else:
            in_range.append(link)

    for link in in_range:
        if link.content_hash != link.record_hash:
            problems.append(ChainProblem(CHANGED, link.seq, link.decision_id, "content does not match its record_hash"))

    present = {link.seq for link in in_range}
    problems.extend(_missing(present, anchor))

    at_head = next((link for link in in_range if link.seq == anchor.head_seq), None)
    if at_head is not None and at_head.record_hash != anchor.head_hash:
        problems.append(
            ChainProblem(
                CHANGED, at_head.seq, at_head.decision_id, "record_hash differs from the one the chain head recorded"
            )
        )

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
            yield ChainProblem(DELETED, start, None, detail)
            start = None


def _link_problems(links: Sequence[ChainLink], present: set[int], anchor: ChainAnchor) -> list[ChainProblem]:
    """Rebuild the chain from its hash links; report forks, breaks and records out of order."""
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
            # Two records claiming the same predecessor: the genuine one is the one the chain continues from.
            candidates.sort(key=lambda i: (not continues(i), links[i].seq))
            chosen, forks = candidates[0], candidates[1:]
            for i in forks:
                visited.add(i)
                problems.append(
                    ChainProblem(
                        INSERTED,
                        links[i].seq,
                        links[i].decision_id,
                        f"forks the chain: chains from the same record as seq {links[chosen].seq}",
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
                ChainProblem(
                    INSERTED,
                    links[i].seq,
                    links[i].decision_id,
                    f"forks the chain: chains from the checkpoint like seq {links[roots[0]].seq}",
                )
            )

    for i, link in enumerate(links):
        if i in visited or link.prev_hash == anchor.base_hash or link.prev_hash in by_hash:
            continue
        # An orphan: its prev_hash names no stored record.
        segment = walk(i)
        segments.append(segment)
        if link.seq - 1 > anchor.base_seq and link.seq - 1 not in present:
            continue  # explained by the deleted record(s) just before it
        if len(segment) == 1 and not continues(i):
            problems.append(
                ChainProblem(INSERTED, link.seq, link.decision_id, "neither chains from nor is chained to any record")
            )
        elif link.seq == anchor.base_seq + 1:
            problems.append(
                ChainProblem(
                    BROKEN_LINK, link.seq, link.decision_id, "prev_hash does not match the genesis/checkpoint hash"
                )
            )
        else:
            problems.append(
                ChainProblem(
                    BROKEN_LINK,
                    link.seq,
                    link.decision_id,
                    f"prev_hash matches no stored record: seq {link.seq - 1} was altered and re-hashed, "
                    "or records before it were removed and the rest renumbered",
                )
            )

    for i, link in enumerate(links):
        if i not in visited:
            problems.append(ChainProblem(INSERTED, link.seq, link.decision_id, "is not reachable along the chain"))

    for segment in segments:
        stored = [links[i].seq for i in segment]
        for i, expected in zip(segment, sorted(stored), strict=True):
            if links[i].seq != expected:
                problems.append(
                    ChainProblem(
                        REORDERED,
                        links[i].seq,
                        links[i].decision_id,
                        f"stored at seq {links[i].seq} but its hash chain places it at seq {expected}",
                    )
                )
    return problems
