"""How often the published lists contact a sleeping dog again, and what the responder's per-contact harm makes of it.

The responder draws a provoked closure on every delivered contact of a sleeping dog (``World.dog_leave_prob``: on
``realistic`` 0.35 for a plan or retention offer, 0.002 for any other contact), so a dog delivered n contacts leaves
with 1 - prod(1 - p_k). The cited study measured one campaign; the repetition is an assumption (docs/simulator.md's
table). This report says how much the assumption weighs on real lists: the contacted dogs by how many decision days
contacted them, and the expected closures under the per-contact draw against a once-per-customer reading (a dog
reacts to being delivered a contact at all, once), each contact weighted by its channel's delivery rate
(``simulator.responder.DELIVER``). Reads the hidden truth: a simulator and benchmark tool, not pipeline code. Run
after ``make run`` (or a loop, with its root):

    .venv/bin/python bench/repeat_contacts.py --start 2026-11-18 --end 2026-11-20

It prints one JSON object.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def repeat_contacts(paths, start: dt.date, end: dt.date) -> dict:
    """The contacted sleeping dogs and their expected provoked closures under both readings (module docstring)."""
    from simulator import warmup
    from simulator.responder import DELIVER, World

    world = World.load(warmup.spec_of(paths), paths)
    dog = world.c["sleeping_dog"]
    days: dict[int, set] = collections.defaultdict(set)
    delivered: dict[int, list[float]] = collections.defaultdict(list)  # per dog, P(delivered) of each contact
    contacts = 0
    day = start
    while day <= end:
        lists = world.lists(paths, day)
        contacts += len(lists["ref"])
        rate = world.dog_leave_prob(lists["prod"])
        for i, ch, r in zip(lists["idx"], lists["channel"], rate, strict=True):
            if dog[i]:
                delivered[int(i)].append((DELIVER[ch], float(r)))
                days[int(i)].add(day)
        day += dt.timedelta(days=1)
    # per contact: 1 - prod(1 - d p) over the dog's contacts; once per dog: the highest p of its contacts x P(at
    # least one delivered)
    per_contact = sum(1 - np.prod([1 - d * r for d, r in ds]) for ds in delivered.values())
    once = sum(max(r for _, r in ds) * (1 - np.prod([1 - d for d, _ in ds])) for ds in delivered.values())
    return {"root": str(paths.root), "start": start.isoformat(), "end": end.isoformat(), "contacts": contacts,
            "contacts_to_dogs": sum(len(ds) for ds in delivered.values()), "dogs_contacted": len(days),
            "dogs_by_days_contacted": dict(sorted(collections.Counter(len(v) for v in days.values()).items())),
            "dogs_by_contacts": dict(sorted(collections.Counter(len(ds) for ds in delivered.values()).items())),
            "dog_contact_churn_prob": float(world.params.dog_contact_churn_prob),
            "dog_contact_families": world.params.dog_contact_families,
            "dog_other_contact_churn_prob": float(world.params.dog_other_contact_churn_prob),
            "expected_closures_per_contact_draw": round(float(per_contact), 1),
            "expected_closures_once_per_dog": round(float(once), 1),
            "ratio": round(float(per_contact / once), 3) if once else None}


def main() -> None:
    from jobs.platform.config import settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first decision date")
    ap.add_argument("--end", type=dt.date.fromisoformat, required=True, help="last decision date")
    ap.add_argument("--env", default="local", help="environment whose storage root holds the lists (default: local)")
    args = ap.parse_args()
    print(json.dumps(repeat_contacts(settings(args.env).paths, args.start, args.end), indent=1))


if __name__ == "__main__":
    main()
