"""A synthetic world with known ground truth: topical items, multi-interest users that drift,
bundle co-occurrence that only item ids carry, cold-start items, clicks and rarer purchases.

``generate_world`` writes ``items.jsonl``, ``events.jsonl`` (time-ordered) and ``world.json``
(the latent truth: topics, item topics and bundles, user interests before/after the drift).
"""

from __future__ import annotations

import json
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np

from schemas.events import ClickEvent, PurchaseEvent
from schemas.items import CatalogueItem
from stream_app.datagen.jsonl import write_jsonl

Progress = Callable[[str, int, int | None], None]

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = 60
NOISE = 0.07  # share of clicks on a uniformly random available item
STICKY = 0.8  # chance a session keeps its current interest for the next click
BUNDLE_NEXT = 0.35  # chance the next same-topic click continues the last item's bundle
MIXED_SHARE = 0.10  # items that mix two topics
COLD_SHARE = 0.10  # items that appear mid-stream
PURCHASE_BASE = 0.16
ZIPF = 1.0  # popularity exponent over the rank within a topic
SESSION_MEAN = 8  # clicks+purchases per session (geometric)
GAP_MEAN_S = 60.0  # seconds between events within a session (exponential, plus 2 s)

# name | audience | median price ; nouns ; adjectives ; brands ; sub-categories
_VOCAB = """
hiking | hikers and backpackers | 70
 Backpack, Trail Boots, Trekking Poles, Dome Tent, Headlamp, Water Filter, Rain Shell, Daypack
 Lightweight, Waterproof, Alpine, Rugged, Packable, Ultralight
 Summit Ridge, TrailForge, Peakline, Wildpath
 packs, footwear, shelter, trail gear
cooking | home cooks and chefs | 45
 Chef Knife, Cast Iron Skillet, Dutch Oven, Saucepan, Cutting Board, Wok, Stockpot, Mandoline
 Nonstick, Forged, Enameled, Stainless, Seasoned, Professional
 Copperleaf, IronHearth, Mise Kitchen, Saute House
 cookware, knives, prep tools, bakeware
jazz | jazz listeners and musicians | 25
 Vinyl LP, Saxophone Reeds, Trumpet Mouthpiece, Bebop Songbook, Live Album, Box Set, Real Book
 Swinging, Smoky, Modal, Remastered, Cool, Improvised
 Blue Lantern, Bird Records, Swingtime, Midnight Groove
 records, instruments, sheet music, box sets
gaming | video gamers | 50
 Controller, Gaming Headset, Mechanical Keyboard, Gaming Mouse, RPG Game, Shooter Game, Capture Card
 Wireless, RGB, Competitive, Esports, Open World, Low Latency
 PixelForge, RespawnGear, LootBox Labs, Nexus Play
 accessories, video games, peripherals, streaming
gardening | gardeners | 30
 Pruning Shears, Raised Bed, Seed Kit, Watering Can, Compost Bin, Trowel, Garden Hose, Planter
 Organic, Heirloom, Perennial, Galvanized, Drought Tolerant, Flowering
 GreenThumb, Rootwell, Bloomfield, Soil and Sprout
 garden tools, seeds, planters, watering
photography | photographers | 250
 Mirrorless Camera, Prime Lens, Zoom Lens, Tripod, Camera Bag, ND Filter, Speedlight Flash
 Full Frame, Wide Aperture, Stabilized, Weather Sealed, Telephoto, Macro
 Lumora, ApertureOne, ShutterCraft, Focalis
 cameras, lenses, camera support, lighting
cycling | cyclists | 90
 Bike Helmet, Bike Light, Cycling Jersey, Clipless Pedals, Saddle, Bike Pump, Handlebar Bag
 Aero, Carbon, Gravel, Tubeless, Reflective, Padded
 Velocita, Spokewise, Chainring Co, Cadence Works
 bike components, cycling apparel, bike accessories, bike safety
running | runners | 60
 Running Shoes, Running Socks, GPS Watch, Hydration Vest, Running Shorts, Energy Gels
 Cushioned, Marathon, Responsive, Moisture Wicking, Tempo, Sprint
 Stridelab, PaceMaker, Kilometer, Finishline
 running shoes, running apparel, sports nutrition, wearables
fishing | anglers | 40
 Spinning Rod, Baitcasting Reel, Fly Line, Tackle Box, Fishing Lures, Chest Waders, Landing Net
 Saltwater, Braided, Sensitive, Corrosion Resistant, Fly Fishing, Bass
 Riverbend, DeepCast, Hook and Hackle, Tidewater
 rods, reels, tackle, fishing apparel
knitting | knitters and crocheters | 20
 Merino Yarn, Knitting Needles, Crochet Hook Set, Knitting Pattern Book, Stitch Markers, Yarn Swift
 Chunky, Hand Dyed, Circular, Bamboo, Alpaca, Fingering Weight
 Woolly Lane, Purlwise, Skein Studio, Loopy Ewe
 yarn, needles, knitting patterns, notions
painting | painters and artists | 35
 Acrylic Paint Set, Watercolor Palette, Oil Paints, Canvas Panels, Sable Brushes, Easel, Gesso
 Artist Grade, Vibrant, Pigmented, Stretched, Impasto, Gouache
 Chroma House, Brushwell, Pigmentum, Atelier Nine
 paints, brushes, canvases, easels
astronomy | stargazers and amateur astronomers | 300
 Telescope, Eyepiece, Star Chart, Equatorial Mount, Barlow Lens, Solar Filter, Finder Scope
 Refractor, Reflector, Dobsonian, Apochromatic, Deep Sky, Motorized
 Orionis, Celestra, NightVault, Stellaris
 telescopes, eyepieces, mounts, star charts
skincare | skincare enthusiasts | 25
 Face Serum, Moisturizer, Sunscreen, Facial Cleanser, Retinol Cream, Toner, Sheet Masks, Eye Cream
 Hydrating, Fragrance Free, Vitamin C, Hyaluronic, Gentle, Brightening
 Dermalux, Glowlab, Pure Petal, Skinsmith
 serums, moisturizers, sun care, cleansers
coffee | coffee lovers and baristas | 40
 Espresso Beans, Burr Grinder, Pour Over Dripper, French Press, Milk Frother, Moka Pot, Coffee Scale
 Single Origin, Dark Roast, Light Roast, Barista, Fresh Roasted, Arabica
 Roastery Row, Crema Co, Bean and Burr, Third Wave
 coffee beans, brewers, grinders, coffee accessories
wine | wine lovers and sommeliers | 35
 Cabernet Sauvignon, Pinot Noir, Chardonnay, Wine Decanter, Corkscrew, Wine Glasses, Wine Aerator
 Vintage, Oaked, Full Bodied, Crisp, Reserve, Tannic
 Chateau Vale, Vinora, Cellar Door, Terroir Hill
 red wine, white wine, glassware, wine accessories
dogs | dog owners | 30
 Dog Leash, Dog Bed, Chew Toy, Puppy Food, Dog Harness, Training Treats, Dog Collar, Grooming Brush
 Durable, Orthopedic, Grain Free, Chewproof, Puppy Safe, Washable
 Barkley, Pawsome, Good Boy Co, Fetchworks
 dog food, dog toys, dog beds, walking
aquariums | fishkeepers | 45
 Aquarium Tank, Canister Filter, Aquarium Heater, Fish Flakes, Aquatic Plants, Aquarium Gravel
 Tropical, Planted, Reef Safe, Nano, Rimless, Submersible
 Coral Cove, AquaNest, Tetrafin, Bluewater
 tanks, filtration, fish food, aquatic plants
woodworking | woodworkers | 80
 Chisel Set, Hand Plane, Dovetail Saw, Wood Clamps, Workbench, Router Bits, Marking Gauge
 Hardwood, Precision, Japanese, Sharpened, Carbide, Joinery
 Oak and Iron, Grainline, Joinery Works, Sawdust Co
 hand tools, power tools, clamps, wood finishing
yoga | yogis | 35
 Yoga Mat, Yoga Blocks, Meditation Cushion, Yoga Strap, Yoga Leggings, Bolster, Yoga Wheel
 Non Slip, Eco Cork, Restorative, Mindful, Stretchy, Grounding
 Lotus Flow, Namaste Supply, Zenmat, Asana Lab
 yoga mats, yoga props, yoga apparel, meditation
skiing | skiers and snowboarders | 150
 Ski Goggles, Ski Helmet, Ski Poles, Snowboard, Ski Boots, Insulated Gloves, Ski Jacket, Ski Wax
 Powder, Freeride, Anti Fog, Backcountry, Slope Ready, Heated
 Snowline, Piste Pro, Mogul, Frostpeak
 skis, goggles, ski outerwear, ski boots
baby | new parents | 40
 Stroller, Baby Carrier, Diaper Bag, Crib Sheets, Baby Monitor, Teething Toy, Baby Bottle Set
 Newborn, Hypoallergenic, Convertible, Soft Touch, BPA Free, Cozy
 Little Sprout, Cradlewell, Tiny Steps, Babybloom
 strollers, nursery, feeding, carriers
car care | car enthusiasts | 30
 Car Wax, Microfiber Towels, Tire Shine, Dash Cam, Pressure Washer, Car Vacuum, Jump Starter
 Detailing, Showroom, Ceramic, High Gloss, Automotive, Scratch Free
 Autoshine, Gearhead, Motorlux, Detail Garage
 car detailing, car electronics, car cleaning, garage tools
surfing | surfers | 120
 Surfboard, Wetsuit, Surf Wax, Surf Leash, Surf Fins, Board Bag, Rash Guard, Traction Pad
 Longboard, Shortboard, Neoprene, Thermal, Wave Ready, Epoxy
 Swellrider, Barrel Co, Offshore, Saltline
 surfboards, wetsuits, surf accessories, traction
home office | remote workers | 120
 Standing Desk, Office Chair, Monitor Arm, Desk Lamp, Webcam, Laptop Stand, Cable Tray, Desk Mat
 Height Adjustable, Ergonomic, Minimalist, Productive, Compact, Quiet
 Deskcraft, Workwell, Homebase, Focus Studio
 office furniture, office lighting, desk accessories, video calls
"""


@dataclass(frozen=True)
class Topic:
    name: str
    audience: str
    price: float
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    brands: tuple[str, ...]
    subcategories: tuple[str, ...]


def _parse_vocab(text: str) -> tuple[Topic, ...]:
    lines = [ln.strip() for ln in text.strip().splitlines()]
    topics = []
    for i in range(0, len(lines), 5):
        name, audience, price = (p.strip() for p in lines[i].split("|"))
        words = [tuple(w.strip() for w in ln.split(",")) for ln in lines[i + 1 : i + 5]]
        topics.append(Topic(name, audience, float(price), *words))
    return tuple(topics)


TOPICS = _parse_vocab(_VOCAB)


@dataclass
class _Catalogue:
    items: list[CatalogueItem]
    ids: list[str]
    topics: list[list[int]]  # main topic first, then the mixed-in topic if any
    bundle: list[int]
    bundles: list[list[int]]
    price: list[float]
    appear_ms: list[int]  # ms after START


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(n)))


def _make_catalogue(rng: np.random.Generator, n_items: int, span_ms: int) -> _Catalogue:
    n_topics = len(TOPICS)
    main = rng.permutation(np.arange(n_items) % n_topics)
    mixed = rng.random(n_items) < MIXED_SHARE
    other = (main + rng.integers(1, n_topics, n_items)) % n_topics
    median = np.array([t.price for t in TOPICS])[main]
    prices = np.round(median * rng.lognormal(0.0, 0.5, n_items), 2).clip(0.99)
    bundle = np.zeros(n_items, dtype=np.int64)
    bundles: list[list[int]] = []
    never_cold = np.zeros(n_items, dtype=bool)
    for k in range(n_topics):
        members = np.flatnonzero(main == k)
        never_cold[members[:1]] = True  # every topic has an item from the start
        pos = 0
        while pos < len(members):
            left = len(members) - pos
            size = int(rng.integers(3, 7))
            if left - size < 3:  # no runt bundle at the end (only tiny topics go below 3)
                size = left if left <= 6 else left - 3
            bundle[members[pos : pos + size]] = len(bundles)
            bundles.append(members[pos : pos + size].tolist())
            pos += size
    cold = (rng.random(n_items) < COLD_SHARE) & ~never_cold
    appear = np.where(cold, rng.uniform(0.15, 0.85, n_items) * span_ms, 0).astype(np.int64)
    w = _width(n_items, 6)
    words = rng.integers(0, 1 << 30, size=(n_items, 6))
    ids, items, topics = [], [], []
    for i in range(n_items):
        t, r = TOPICS[int(main[i])], words[i]
        b = TOPICS[int(other[i])] if mixed[i] else t
        noun, brand = t.nouns[r[0] % len(t.nouns)], t.brands[r[1] % len(t.brands)]
        adj, adj2 = b.adjectives[r[2] % len(b.adjectives)], t.adjectives[r[3] % len(t.adjectives)]
        sub = t.subcategories[r[4] % len(t.subcategories)]
        code = f"{'ABCDEFGHJKLMNPRSTVWXZ'[r[5] % 21]}{r[5] % 90 + 10}"
        desc = f"{adj2} {noun.lower()} by {brand}, made for {t.audience}."
        categories = [t.name, sub]
        if mixed[i]:
            desc += f" Also loved by {b.audience}."
            categories.append(b.name)
        item_id = f"i{i:0{w}d}"
        ts = START + timedelta(milliseconds=int(appear[i]))
        ids.append(item_id)
        topics.append([int(main[i]), int(other[i])] if mixed[i] else [int(main[i])])
        items.append(
            CatalogueItem(
                item_id=item_id,
                title=f"{adj} {brand} {noun} {code}",
                description=desc,
                categories=categories,
                price=float(prices[i]),
                ts=ts,
            )
        )
    return _Catalogue(
        items, ids, topics, bundle.tolist(), bundles, prices.tolist(), appear.tolist()
    )


def _topic_pools(
    rng: np.random.Generator, cat: _Catalogue
) -> list[tuple[list[int], list[int], list[float]]]:
    """Per topic: (item indices sorted by appearance, appearance ms, cumulative popularity).

    Popularity is Zipf-like over a random rank within the topic; mixed items also sit in
    their second topic's pool at half weight. Sorting by appearance makes the items available
    at time t a prefix of the pool, so a sample is two bisections.
    """
    pools = []
    for k in range(len(TOPICS)):
        main = [i for i, ts in enumerate(cat.topics) if ts[0] == k]
        mixed = [i for i, ts in enumerate(cat.topics) if len(ts) > 1 and ts[1] == k]
        ranks = rng.permutation(len(main) + len(mixed)) + 1
        weight = (1.0 / ranks**ZIPF) * np.r_[np.ones(len(main)), np.full(len(mixed), 0.5)]
        members = main + mixed
        order = sorted(range(len(members)), key=lambda j: (cat.appear_ms[members[j]], j))
        pools.append(
            (
                [members[j] for j in order],
                [cat.appear_ms[members[j]] for j in order],
                list(accumulate(float(weight[j]) for j in order)),
            )
        )
    return pools


def _make_users(rng: np.random.Generator, n_users: int) -> list[dict[str, Any]]:
    n_topics = len(TOPICS)
    prior = rng.dirichlet(np.full(n_topics, 5.0))
    users = []
    for _ in range(n_users):
        k = int(rng.choice(5, p=[0.15, 0.3, 0.3, 0.15, 0.1])) + 1
        before = rng.choice(n_topics, size=k, replace=False, p=prior).tolist()
        s_before = rng.dirichlet(np.ones(k)).tolist()
        dropped = int(rng.integers(k))
        left = [t for t in range(n_topics) if t not in before]
        p_left = prior[left] / prior[left].sum()
        new = int(rng.choice(left, p=p_left))
        after = [new if j == dropped else t for j, t in enumerate(before)]
        ranked = np.sort(rng.dirichlet(np.ones(k)))[::-1].tolist()
        rest = iter(ranked[1:])  # the new interest is the strongest one after the drift
        s_after = [ranked[0] if j == dropped else next(rest) for j in range(k)]
        users.append(
            {
                "before": list(zip(before, s_before, strict=True)),
                "after": list(zip(after, s_after, strict=True)),
                "dropped": int(before[dropped]),
                "new": new,
            }
        )
    return users


def _user_times(rng: np.random.Generator, n: int, span_ms: int) -> tuple[list[int], list[bool]]:
    """Event times (ms after START, non-decreasing) in sessions, and session-start flags."""
    lengths = rng.geometric(1.0 / SESSION_MEAN, size=n)
    n_sessions = int(np.searchsorted(np.cumsum(lengths), n) + 1)
    lengths = lengths[:n_sessions]
    lengths[-1] -= int(lengths.sum()) - n
    starts = np.sort(rng.uniform(0, span_ms * 0.995, n_sessions))
    first = np.zeros(n, dtype=bool)
    first[np.r_[0, np.cumsum(lengths)[:-1]]] = True
    gaps = (rng.exponential(GAP_MEAN_S, n) + 2.0) * 1000.0
    gaps[first] = 0.0
    session_of = np.repeat(np.arange(n_sessions), lengths)
    offsets = np.cumsum(gaps)
    offsets -= np.repeat(offsets[first], lengths)
    times = np.maximum.accumulate(np.round(starts[session_of] + offsets)).clip(0, span_ms - 1)
    return times.astype(np.int64).tolist(), first.tolist()


def _simulate(
    rng: np.random.Generator,
    cat: _Catalogue,
    users: list[dict[str, Any]],
    n_events: int,
    span_ms: int,
    drift_ms: int,
    progress: Progress | None,
) -> tuple[list[int], list[int], list[int], list[bool]]:
    pools = _topic_pools(rng, cat)
    topic_median = [t.price for t in TOPICS]
    price_factor = [
        min(2.0, max(0.3, (topic_median[ts[0]] / p) ** 0.5))
        for ts, p in zip(cat.topics, cat.price, strict=True)
    ]
    all_order = sorted(range(len(cat.ids)), key=lambda i: (cat.appear_ms[i], i))
    all_appear = [cat.appear_ms[i] for i in all_order]
    activity = rng.lognormal(0.0, 1.0, len(users))
    counts = rng.multinomial(n_events, activity / activity.sum()).tolist()
    uniforms = rng.random((n_events, 6)).tolist()
    ts_out: list[int] = []
    user_out: list[int] = []
    item_out: list[int] = []
    buy_out: list[bool] = []
    row = 0
    for u, n in enumerate(counts):
        if n == 0:
            continue
        times, first = _user_times(rng, n, span_ms)
        phases = []
        for key in ("before", "after"):
            tops = [t for t, _ in users[u][key]]
            strengths = [s for _, s in users[u][key]]
            phases.append((tops, strengths, list(accumulate(strengths))))
        last_in_topic: dict[int, int] = {}
        cur, cur_phase, prev_item, prev_strength, prev_buy = 0, -1, -1, 0.0, True
        for j in range(n):
            t, r = times[j], uniforms[row]
            row += 1
            phase = 1 if t >= drift_ms else 0
            tops, strengths, cum = phases[phase]
            if first[j] or phase != cur_phase or r[0] > STICKY:
                cur = min(bisect_right(cum, r[1] * cum[-1]), len(cum) - 1)
                cur_phase = phase
            if first[j]:
                prev_item = -1
            if prev_item >= 0 and not prev_buy:
                p_buy = PURCHASE_BASE * (0.4 + prev_strength) * price_factor[prev_item]
                if r[2] < p_buy:
                    ts_out.append(t)
                    user_out.append(u)
                    item_out.append(prev_item)
                    buy_out.append(True)
                    prev_buy = True
                    continue
            topic = tops[cur]
            members, appear, cum_pop = pools[topic]
            avail = bisect_right(appear, t)
            item = -1
            if r[3] < NOISE or avail == 0:
                item = all_order[int(r[4] * bisect_right(all_appear, t))]
                prev_strength = 0.0
            else:
                last = last_in_topic.get(topic, -1)
                if last >= 0 and r[4] < BUNDLE_NEXT:
                    mates = [m for m in cat.bundles[cat.bundle[last]] if m != last]
                    mates = [m for m in mates if cat.appear_ms[m] <= t]
                    if mates:
                        item = mates[int(r[5] * len(mates))]
                if item < 0:
                    pick = bisect_right(cum_pop, r[5] * cum_pop[avail - 1])
                    item = members[min(pick, avail - 1)]
                if cat.topics[item][0] == topic:
                    last_in_topic[topic] = item
                prev_strength = strengths[cur]
            ts_out.append(t)
            user_out.append(u)
            item_out.append(item)
            buy_out.append(False)
            prev_item, prev_buy = item, False
        if progress is not None:
            progress("simulating", row, n_events)
    return ts_out, user_out, item_out, buy_out


def _interests(pairs: list[tuple[int, float]]) -> list[dict[str, Any]]:
    return [
        {"topic": t, "name": TOPICS[t].name, "strength": round(s, 6)}
        for t, s in sorted(pairs, key=lambda p: -p[1])
    ]


def generate_world(
    out_dir: str | Path,
    users: int,
    items: int,
    events: int,
    seed: int = 0,
    drift_at: float = 0.5,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Generate a synthetic world into ``out_dir``; the same seed gives byte-identical files.

    ``progress(stage, done, total)`` is called now and then. Returns a summary dict.
    """
    if users < 1:
        msg = f"users: expected at least 1, got {users}"
        raise ValueError(msg)
    if items < len(TOPICS):
        msg = f"items: expected at least {len(TOPICS)} (one per topic), got {items}"
        raise ValueError(msg)
    if events < 1:
        msg = f"events: expected at least 1, got {events}"
        raise ValueError(msg)
    if not 0.0 <= drift_at <= 1.0:
        msg = f"drift_at: expected a fraction of the time span in [0, 1], got {drift_at}"
        raise ValueError(msg)
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    span_ms = SPAN_DAYS * 86_400_000
    drift_ms = int(round(drift_at * span_ms))
    cat = _make_catalogue(rng, items, span_ms)
    people = _make_users(rng, users)
    ts, who, what, buy = _simulate(rng, cat, people, events, span_ms, drift_ms, progress)
    order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable").tolist()
    uw, ew = _width(users, 5), _width(events, 7)

    def event_models() -> Any:
        for n, k in enumerate(order, start=1):
            common: dict[str, Any] = {
                "event_id": f"e{n:0{ew}d}",
                "user_id": f"u{who[k]:0{uw}d}",
                "item_id": cat.ids[what[k]],
                "ts": START + timedelta(milliseconds=ts[k]),
            }
            if buy[k]:
                yield PurchaseEvent(event_type="purchase", price=cat.price[what[k]], **common)
            else:
                yield ClickEvent(event_type="click", **common)
            if progress is not None and n % 20_000 == 0:
                progress("writing", n, events)

    paths = {name: out / f"{name}.jsonl" for name in ("items", "events")}
    paths["world"] = out / "world.json"
    write_jsonl(paths["items"], cat.items)
    write_jsonl(paths["events"], event_models())
    world = {
        "seed": seed,
        "start": START.isoformat().replace("+00:00", "Z"),
        "span_days": SPAN_DAYS,
        "drift_at": drift_at,
        "drift_ts": (START + timedelta(milliseconds=drift_ms)).isoformat().replace("+00:00", "Z"),
        "topics": [t.name for t in TOPICS],
        "item_topics": dict(zip(cat.ids, cat.topics, strict=True)),
        "bundles": [[cat.ids[i] for i in b] for b in cat.bundles],
        "users": {
            f"u{u:0{uw}d}": {
                "before": _interests(p["before"]),
                "after": _interests(p["after"]),
                "dropped_topic": p["dropped"],
                "new_topic": p["new"],
            }
            for u, p in enumerate(people)
        },
    }
    paths["world"].write_text(json.dumps(world, indent=1) + "\n", encoding="utf-8")
    n_buy = sum(buy)
    return {
        "users": users,
        "items": items,
        "events": len(order),
        "clicks": len(order) - n_buy,
        "purchases": n_buy,
        "cold_start_items": sum(1 for a in cat.appear_ms if a > 0),
        "topics": len(TOPICS),
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 3),
        "paths": {k: str(v) for k, v in paths.items()},
    }
