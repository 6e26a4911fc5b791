"""The CSV job file of bench/load.py: generated, streamed and seeded (the same rows on every
run), with realistic rows: prompts of 60 to 200 characters (3% in Chinese, 40% of the English
ones written as one comma-separated line; none holds a line break), the models' image counts,
https image links, aspect ratios and booleans, some left empty. Row counts (of this file, of
an export) are read as CSV all the same."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Final

SEED: Final = 20_240_601
HEADER: Final = ("id", "prompt", "model", "images", "aspect_ratio", "enhance_prompt")

# (model, fewest images, most images, weight)
MODELS: Final = (
    ("veo3.1", 1, 2, 30),
    ("veo3-fast-frames", 1, 2, 20),
    ("veo3.1-pro", 1, 2, 12),
    ("veo3-pro-frames", 1, 1, 10),
    ("veo2-fast-frames", 1, 2, 8),
    ("veo3.1-components", 1, 3, 12),
    ("veo2-fast-components", 1, 3, 8),
)
SUBJECTS: Final = (
    "A golden retriever puppy",
    "An elderly fisherman",
    "A red vintage convertible",
    "A ceramic coffee mug",
    "A young dancer in a yellow dress",
    "A pair of white sneakers",
    "A hummingbird",
    "A chef in a busy kitchen",
    "A lighthouse",
    "A glass perfume bottle",
    "A boy on a bicycle",
    "A snow leopard",
    "A steaming bowl of ramen",
    "A cargo ship",
    "A wristwatch with a leather strap",
    "A street musician",
    "An astronaut",
    "A paper lantern",
)
ACTIONS: Final = (
    "walks slowly through",
    "spins gently in",
    "rests quietly on",
    "races across",
    "emerges from the fog over",
    "is revealed by a slow pan across",
    "glides above",
    "turns toward the camera in",
    "floats weightlessly over",
    "dances in the rain in",
)
PLACES: Final = (
    "a sunlit meadow",
    "a neon-lit Tokyo alley",
    "a marble kitchen counter",
    "the surface of Mars",
    "a misty pine forest",
    "a crowded night market",
    "a minimalist white studio",
    "a windswept beach at dawn",
    "a snowy mountain pass",
    "an old library",
    "a desert highway",
)
DETAILS: Final = (
    "cinematic lighting",
    "shallow depth of field",
    "slow dolly-in",
    "golden hour",
    "soft backlight",
    "handheld camera feel",
    "drone shot from above",
    "35mm film grain",
    "warm color palette",
    "the camera orbits the subject",
    "light rain falls",
    "dust floats in the sunbeams",
    "reflections shimmer on wet asphalt",
    "4K, photorealistic",
    'a neon sign reading "OPEN" flickers',
    "the background slowly blurs",
    "no text on screen",
    "smooth 24 fps motion",
    "leaves drift past the lens",
    "studio product shot",
)
CHINESE: Final = (
    "一只橘猫在窗台上晒太阳",
    "镜头缓慢推进",
    "清晨的薄雾笼罩着山谷",
    "电影感光影",
    "一位老人在茶馆里喝茶",
    "樱花随风飘落",
    "城市夜景霓虹闪烁",
    "产品在白色背景上旋转",
    "柔和的逆光",
    "航拍视角",
    "雨后的石板路反射着灯光",
    "画面温暖而安静",
    "一辆红色的老爷车驶过海边公路",
    "小女孩在麦田里奔跑",
    "镜头环绕主体缓慢旋转",
    "浅景深",
    "金色的夕阳洒在湖面上",
    "一杯热咖啡冒着热气",
    "宇航员漂浮在空间站里",
    "慢动作特写",
    "古老的石桥横跨小河",
    "风吹动窗帘",
    "厨师在厨房里忙碌",
    "不要出现文字",
)
IMAGE_HOSTS: Final = (
    "https://cdn.shop-example.com/products",
    "https://images.example.org/uploads/2024",
    "https://storage.googleapis.com/acme-media/frames",
    "https://assets.example.net/catalog/img",
)
CHINESE_SHARE: Final = 0.03
COMMA_SHARE: Final = 0.4  # English prompts written as one comma-separated line


def english_prompt(rng: random.Random) -> str:
    """60 to 200 characters: a subject, an action and a place, then details."""
    length = rng.randint(60, 200)
    joiner, end = (", ", "") if rng.random() < COMMA_SHARE else (". ", ".")
    text = f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
    for detail in rng.sample(DETAILS, len(DETAILS)):
        if len(text) >= length or len(text + joiner + detail + end) > 200:
            break
        text += joiner + (detail if end == "" else detail[0].upper() + detail[1:])
    return text + end


def chinese_prompt(rng: random.Random) -> str:
    """60 to 200 characters of Chinese phrases."""
    length = rng.randint(60, 200)
    phrases = rng.sample(CHINESE, len(CHINESE))
    text = phrases.pop()
    for phrase in phrases:
        if len(text) >= length or len(text) + len(phrase) + 2 > 200:
            break
        text += "，" + phrase
    return text + "。"


def images(rng: random.Random, low: int, high: int) -> str:
    count = rng.randint(low, high)
    return "|".join(
        f"{rng.choice(IMAGE_HOSTS)}/{rng.getrandbits(64):016x}.{rng.choice(('jpg', 'png'))}"
        for _ in range(count)
    )


def job_rows(count: int, seed: int) -> Iterator[tuple[str, ...]]:
    rng = random.Random(seed)
    weights = [model[3] for model in MODELS]
    for number in range(1, count + 1):
        name, low, high, _ = rng.choices(MODELS, weights)[0]
        prompt = chinese_prompt(rng) if rng.random() < CHINESE_SHARE else english_prompt(rng)
        yield (
            f"job-{number:07d}",
            prompt,
            name,
            images(rng, low, high),
            rng.choice(("16:9", "16:9", "9:16", "")),
            rng.choice(("true", "false", "")),
        )


def write_csv(path: Path, count: int, seed: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows(job_rows(count, seed))


def count_csv_rows(path: Path) -> int:
    """The records of a CSV file with a header, read as CSV (a quoted cell may hold a line
    break), blank lines left out."""
    with path.open(newline="", encoding="utf-8") as handle:
        return sum(1 for row in csv.reader(handle) if row) - 1


def csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])
