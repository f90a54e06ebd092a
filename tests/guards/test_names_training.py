"""``scripts/train_names.py`` is reproducible: the same inputs give the same file, byte for byte,
whatever the machine's clock, time zone and hash seed.

Training needs the ``train-names`` extra (faker, wordfreq); without it these tests skip. The
full ``--check`` (retrain at full scale, compare with the pinned file) takes 1.5–4 min on two
cores, so it is slow-marked, as are the small-scale trainings. Issue 16: Faker's
``day_of_week()`` and ``month_name()`` (the ``{DAY}``/``{MONTH}`` slots) draw a moment between
the epoch and ``datetime.now()`` and name its day in the local time zone, so every retrain
generated other sentences; the script now freezes Faker's clock (``FAKER_NOW``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_names.py"

#: Runs the script with Faker's view of the machine clock moved by ``argv[1]`` days: what a
#: retrain on another day sees (Faker's date provider reads the clock through its module's
#: ``datetime``).
_SHIFTED_CLOCK = """
import runpy, sys
from datetime import timedelta
import faker.providers.date_time as module
real, days = module.datetime, float(sys.argv[1])
class Shifted(real):
    @classmethod
    def now(cls, tz=None):
        return real.now(tz) + timedelta(days=days)
module.datetime = Shifted
sys.argv = [sys.argv[2], *sys.argv[3:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _needs_training_extra() -> None:
    pytest.importorskip("faker")
    pytest.importorskip("wordfreq")
    pytest.importorskip("sklearn")


def _train(
    *args: str, hash_seed: str = "0", tz: str = "UTC", clock_days: float = 0.0
) -> subprocess.CompletedProcess[str]:
    _needs_training_extra()
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, TZ=tz)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "scripts"), env.get("PYTHONPATH", "")]
    )
    command = [sys.executable, "-c", _SHIFTED_CLOCK, str(clock_days), str(SCRIPT), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env=env
    )


def _import_script() -> ModuleType:
    _needs_training_extra()
    # The script pins the BLAS thread variables on import: not for the rest of the suite.
    saved = dict(os.environ)
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_names
    finally:
        sys.path.remove(str(ROOT / "scripts"))
        os.environ.clear()
        os.environ.update(saved)
    return train_names


def test_faker_clock_freezes_the_day_and_month_names() -> None:
    train_names = _import_script()
    import faker.providers.date_time as module
    from faker import Faker

    def names(now: datetime) -> list[str]:
        fake = Faker(["en_US", "de_DE", "fr_FR", "es_ES"])
        fake.seed_instance(16)
        with train_names.faker_clock(now):
            return [f"{fake.day_of_week()} {fake.month_name()}" for _ in range(50)]

    real = module.datetime
    pinned = train_names.FAKER_NOW
    assert names(pinned) == names(pinned)
    assert names(pinned) != names(datetime(2031, 6, 1, tzinfo=UTC))
    assert module.datetime is real  # restored on the way out


@pytest.mark.slow
def test_the_day_and_month_slots_follow_fakers_clock() -> None:
    # The control for the test below: at its scale the slots are filled often enough that
    # another "now" changes the sentences, so equal bytes there are the frozen clock's doing.
    train_names = _import_script()
    _, pools = train_names.build_lexicon()

    def sentences(now: datetime) -> list[str]:
        split = train_names.build_split(pools, dev=False, seed=16, scale=0.03, faker_now=now)
        return [text for _, text, _ in split]

    pinned = train_names.FAKER_NOW
    assert sentences(pinned) == sentences(pinned)
    assert sentences(pinned) != sentences(datetime(2031, 6, 1, 12, tzinfo=UTC))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_small_trainings_ignore_clock_time_zone_and_hash_seed(tmp_path: Path) -> None:
    def small(name: str, hash_seed: str, tz: str, clock_days: float) -> bytes:
        out = tmp_path / f"{name}.npz"
        done = _train(
            "--scale", "0.03", "--out", str(out), hash_seed=hash_seed, tz=tz, clock_days=clock_days
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return out.read_bytes()

    # The second sees another day (1000 days on: nearly every drawn day name would change) on
    # the other side of the date line, with another hash seed: the same bytes.
    here = small("here", hash_seed="1", tz="UTC", clock_days=0.0)
    assert here == small("elsewhere", hash_seed="2", tz="Pacific/Kiritimati", clock_days=1000.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_check_reproduces_the_pinned_file() -> None:
    # Three weeks after the pin, in another time zone: the frozen Faker clock gives its bytes.
    done = _train("--check", tz="America/Los_Angeles", clock_days=21.0)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "identical to the pinned" in done.stdout or "within tolerance" in done.stdout
