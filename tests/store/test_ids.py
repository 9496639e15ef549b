"""Request ids: ULIDs that sort in the order one process made them, even within a millisecond
(a fake clock that stands still makes every id in that millisecond)."""

from __future__ import annotations

import threading

from interlock.store.core import new_id


def test_ids_of_one_millisecond_sort_in_the_order_they_were_made() -> None:
    ids = [new_id(1_795_297_020.755) for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.startswith(ids[0][:10]) for i in ids)  # one millisecond, one time part
    assert new_id(1_795_297_020.756) > ids[-1]


def test_a_clock_that_steps_back_keeps_its_own_time() -> None:
    later = new_id(1_795_297_021.000)
    earlier = new_id(1_795_297_020.000)
    assert earlier[:10] < later[:10] and len(earlier) == 26


def test_ids_made_by_many_threads_are_distinct() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(k: int) -> None:
        made[k] = [new_id(1_795_297_030.0) for _ in range(1000)]

    threads = [threading.Thread(target=make, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for ids in made for i in ids]
    assert len(set(every)) == len(every)
    assert all(ids == sorted(ids) for ids in made)
