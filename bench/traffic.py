"""The spike's shape and its callers, fixed in advance so every variant sees the same calls.

The profile follows the seed's incident compressed into a minute: a baseline, a climb to
10x within a few seconds, a hold, and the way back. Arrival times are a Poisson process
whose rate follows the profile (thinning), so calls bunch the way real ones do.

Callers: most spike callers have not called before (a recall brings new people), some
call a second time a few seconds to two minutes after their first call, a few are
numbers nobody knows, and some flows already know the customer id. With
``callers_return``, a population every one of whose customers has called starts again
from its first caller, in the same order: an hour-long spike then needs a population of
a fraction of its calls, and each customer's return comes long after their answer was
fresh in the cache.
"""

from __future__ import annotations

import bisect
import json
import random
import uuid
from dataclasses import dataclass

from bench.population import Population

__all__ = ["Arrival", "Phase", "Profile", "build_schedule"]


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    start_rate: float
    end_rate: float

    def rate(self, t: float) -> float:
        if self.seconds <= 0:
            return self.end_rate
        return self.start_rate + (self.end_rate - self.start_rate) * min(t / self.seconds, 1.0)


@dataclass(frozen=True)
class Profile:
    phases: tuple[Phase, ...]

    @classmethod
    def spike(
        cls,
        baseline: float,
        factor: float,
        *,
        lead: float,
        ramp: float,
        hold: float,
        fall: float,
        tail: float,
    ) -> Profile:
        peak = baseline * factor
        return cls(
            (
                Phase("baseline", lead, baseline, baseline),
                Phase("ramp-up", ramp, baseline, peak),
                Phase("spike", hold, peak, peak),
                Phase("ramp-down", fall, peak, baseline),
                Phase("after", tail, baseline, baseline),
            )
        )

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.phases)

    @property
    def peak(self) -> float:
        return max(max(p.start_rate, p.end_rate) for p in self.phases)

    def at(self, t: float) -> tuple[Phase, float]:
        """The phase at ``t`` seconds from the start, and the time its phase started."""
        start = 0.0
        for phase in self.phases:
            if t < start + phase.seconds:
                return phase, start
            start += phase.seconds
        return self.phases[-1], start - self.phases[-1].seconds

    def rate(self, t: float) -> float:
        phase, start = self.at(t)
        return phase.rate(t - start)

    def span(self, name: str) -> tuple[float, float]:
        start = 0.0
        for phase in self.phases:
            if phase.name == name:
                return start, start + phase.seconds
            start += phase.seconds
        raise KeyError(name)

    def to_json(self) -> list[dict[str, object]]:
        return [
            {"name": p.name, "seconds": p.seconds, "startRate": p.start_rate, "endRate": p.end_rate}
            for p in self.phases
        ]


@dataclass(frozen=True)
class Arrival:
    t: float  # seconds from the start of the run
    phase: str
    kind: str  # "new", "repeat" or "stranger"
    body: bytes


def build_schedule(
    profile: Profile,
    population: Population,
    *,
    seed: int = 11,
    repeat_share: float = 0.15,
    stranger_share: float = 0.07,
    customer_id_share: float = 0.1,
    callers_return: bool = False,
) -> list[Arrival]:
    rng = random.Random(seed)
    order = list(range(population.size))
    rng.shuffle(order)
    next_new = 0
    returning = False  # every customer has called once; they call again, in order
    # First calls, in time order, that may still be followed by a second call.
    first_times: list[float] = []
    first_who: list[int] = []
    arrivals: list[Arrival] = []
    peak = profile.peak
    t = 0.0
    end = profile.seconds
    while True:
        t += rng.expovariate(peak)
        if t >= end:
            break
        if rng.random() * peak > profile.rate(t):
            continue
        phase = profile.at(t)[0].name
        conversation = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        draw = rng.random()
        payload: dict[str, str]
        if draw < stranger_share:
            number = population.strangers[rng.randrange(len(population.strangers))]
            payload = {"conversationId": conversation, "ani": f"tel:{number}"}
            kind = "stranger"
        else:
            who = -1
            if draw < stranger_share + repeat_share:
                lo = bisect.bisect_left(first_times, t - 120.0)
                hi = bisect.bisect_right(first_times, t - 5.0)
                if hi > lo:
                    pick = rng.randrange(lo, hi)
                    who = first_who[pick]
                    kind = "repeat"
                    # A caller calls twice, not three times.
                    del first_times[pick], first_who[pick]
            if who < 0:
                if next_new >= len(order):
                    if not callers_return:
                        raise ValueError("the population is too small for this profile")
                    next_new = 0
                    returning = True
                who = order[next_new]
                next_new += 1
                kind = "return" if returning else "new"
                first_times.append(t)
                first_who.append(who)
            customer = population.customers[who]
            number = customer.phones[rng.randrange(len(customer.phones))]
            payload = {"conversationId": conversation, "ani": f"tel:{number}"}
            if rng.random() < customer_id_share:
                payload["customerId"] = customer.customer_id
        payload["dnis"] = "tel:+18005550100"
        arrivals.append(
            Arrival(t, phase, kind, json.dumps(payload, separators=(",", ":")).encode())
        )
    return arrivals
