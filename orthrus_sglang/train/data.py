"""Self-distilled documents and the packed rows training reads them as.

A document is one prompt and the base model's own greedy answer to it (token ids). Rows pack
whole documents end to end into ``row_len`` tokens; positions restart at 0 in each document
(as they do at inference) and every token knows where its document starts and ends, so the
masks can keep attention inside one document. Which rows a training step reads depends only
on (seed, step): a resumed run reads exactly what an uninterrupted one would.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .jsonl import jsonl_records


@dataclass(frozen=True)
class Document:
    prompt_ids: list[int]
    answer_ids: list[int]

    def __len__(self) -> int:
        return len(self.prompt_ids) + len(self.answer_ids)


def read_documents(path: str | Path) -> list[Document]:
    """A JSONL of {"prompt_ids": [...], "answer_ids": [...]} records (what ``distill`` writes)."""
    docs = []
    for lineno, record in jsonl_records(path, "data file"):
        try:
            doc = Document([int(t) for t in record["prompt_ids"]], [int(t) for t in record["answer_ids"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: expected a JSON object with prompt_ids and answer_ids ({exc})") from exc
        if doc.prompt_ids and len(doc.answer_ids) >= 2:  # an anchor needs a token after it
            docs.append(doc)
    if not docs:
        raise ValueError(f"{path}: no usable documents (each needs a prompt and an answer of 2+ tokens)")
    return docs


def write_documents(path: str | Path, docs: list[Document], *, append: bool = False) -> None:
    with Path(path).open("a" if append else "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"prompt_ids": d.prompt_ids, "answer_ids": d.answer_ids}) + "\n")


@dataclass
class Rows:
    """A stack of packed rows; every tensor is long [R, T] except ``anchor_ok`` (bool).

    doc_start/doc_end: the row indices where the token's document starts / ends (exclusive);
    padding is a one-token document of its own. anchor_ok: a decode step can start here
    (an answer token with at least one more token of its document after it).
    """

    ids: torch.Tensor
    positions: torch.Tensor
    doc_start: torch.Tensor
    doc_end: torch.Tensor
    anchor_ok: torch.Tensor

    def to(self, device) -> "Rows":
        return Rows(*(getattr(self, f).to(device) for f in FIELDS))

    @staticmethod
    def stack(rows: list["Rows"]) -> "Rows":
        return Rows(*(torch.cat([getattr(r, f) for r in rows]) for f in FIELDS))


def layout(lengths: list[int], row_len: int) -> list[list[int]]:
    """Which docs (indices into ``lengths``, in order) go into each row: whole docs, greedily."""
    rows: list[list[int]] = [[]]
    used = 0
    for i, n in enumerate(lengths):
        n = min(n, row_len)
        if rows[-1] and used + n > row_len:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += n
    return rows


def pack(docs: list[Document], row_len: int, pad_id: int) -> Rows:
    """Pack docs in order, whole, into rows of row_len; a doc longer than a row is cut to row_len."""
    rows = layout([len(d) for d in docs], row_len)
    R = len(rows)
    ids = torch.full((R, row_len), pad_id, dtype=torch.long)
    positions = torch.zeros(R, row_len, dtype=torch.long)
    index = torch.arange(row_len)
    doc_start, doc_end = index.repeat(R, 1), (index + 1).repeat(R, 1)
    anchor_ok = torch.zeros(R, row_len, dtype=torch.bool)
    for r, row in enumerate(rows):
        start = 0
        for doc in (docs[i] for i in row):
            n = min(len(doc), row_len)
            ids[r, start:start + n] = torch.tensor((doc.prompt_ids + doc.answer_ids)[:n])
            positions[r, start:start + n] = torch.arange(n)
            doc_start[r, start:start + n], doc_end[r, start:start + n] = start, start + n
            first, last = start + len(doc.prompt_ids), start + n - 2  # anchors: answer tokens with a successor
            if first <= last:
                anchor_ok[r, first:last + 1] = True
            start += n
    return Rows(ids, positions, doc_start, doc_end, anchor_ok)


FIELDS = ("ids", "positions", "doc_start", "doc_end", "anchor_ok")


class RowStream:
    """An endless, seeded sequence of packed rows: epoch e packs the docs in its own shuffled order."""

    def __init__(self, docs: list[Document], *, row_len: int, pad_id: int, seed: int):
        if row_len < 4:
            raise ValueError(f"row_len must be >= 4, got {row_len}")
        self.docs, self.row_len, self.pad_id, self.seed = docs, row_len, pad_id, seed
        self._lengths = [len(d) for d in docs]
        self._epoch_sizes: list[int] = []
        self._packed: tuple[int, Rows] | None = None  # the last epoch packed into tensors

    def _order(self, e: int) -> list[int]:
        order = list(range(len(self.docs)))
        random.Random(f"orthrus-train/{self.seed}/epoch{e}").shuffle(order)
        return order

    def _epoch_size(self, e: int) -> int:
        while len(self._epoch_sizes) <= e:  # row counts only: cheap, no tensors
            order = self._order(len(self._epoch_sizes))
            self._epoch_sizes.append(len(layout([self._lengths[i] for i in order], self.row_len)))
        return self._epoch_sizes[e]

    def epoch(self, e: int) -> Rows:
        if self._packed is None or self._packed[0] != e:
            self._packed = (e, pack([self.docs[i] for i in self._order(e)], self.row_len, self.pad_id))
        return self._packed[1]

    def locate(self, i: int) -> tuple[int, int]:
        """(epoch, row in that epoch) of stream row i."""
        e = 0
        while i >= self._epoch_size(e):
            i -= self._epoch_size(e)
            e += 1
        return e, i

    def rows(self, first: int, count: int) -> Rows:
        """Rows first..first+count-1 of the stream (crossing epoch boundaries as needed)."""
        out = []
        for i in range(first, first + count):
            e, r = self.locate(i)
            rows = self.epoch(e)
            out.append(Rows(*(getattr(rows, f)[r:r + 1] for f in FIELDS)))
        return Rows.stack(out)
