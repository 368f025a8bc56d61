"""Simulated room impulse responses, written in the RIRS_NOISES layout, and their data dirs.

Rooms are drawn as RIRS_NOISES' ``simulated_rirs`` describes them (Ko et al. 2017; see
REFERENCE.md): shoebox rooms whose length and width are U(1,10) m (``smallroom``), U(10,30) m
(``mediumroom``) or U(30,50) m (``largeroom``), height U(2,5) m, one energy absorption
coefficient U(0.2,0.8) for every wall per room; each RIR of a room has a source and a microphone at
uniform random positions (at least ``wall margin`` from the walls and 0.5 m apart, as far as the
room allows). The RIR is computed by pyroomacoustics' image method at 16 kHz, up to the Sabine
RT60 of the room or ``max_seconds``, whichever is shorter (reflection order: enough for that
length, at most ``max_order``), peak-normalised to 0.99 and written as 16-bit PCM wav.

Written, for each room type:

* ``<out_dir>/simulated_rirs/<type>/Room<NNN>/Room<NNN>-<MMMMM>.wav``;
* ``<out_dir>/simulated_rirs/<type>/rir_list``: Kaldi's lines, ``--rir-id <type>-Room<NNN>-<MMMMM>
  --room-id <type>-Room<NNN> RIRS_NOISES/simulated_rirs/<type>/Room<NNN>/Room<NNN>-<MMMMM>.wav``;
* ``<out_dir>/simulated_rirs/<type>/rir_info.tsv``: per RIR the room size, absorption, Sabine RT60,
  source and microphone positions (m);
* ``<data_dir>/rirs_<type>``: the source dir, by :func:`speakernet.data.prepare.rirs.prepare_rirs`.

Deterministic: the draws of room type ``k`` come from ``numpy.random.default_rng([seed, k])``
(``k`` its index in :data:`~speakernet.data.prepare.rirs.ROOM_TYPES`), so a seed gives
byte-identical files, whichever other types are simulated with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from speakernet.data.prepare.noise_dir import SourceSummary
from speakernet.data.prepare.rirs import ROOM_TYPES, SIMULATED, prepare_rirs
from speakernet.utils.fileio import PathLike, atomic_dir

logger = logging.getLogger(__name__)

#: Length and width range (m) of each room type; RIRS_NOISES' simulated rooms.
ROOM_SIZES = {"smallroom": (1.0, 10.0), "mediumroom": (10.0, 30.0), "largeroom": (30.0, 50.0)}
#: Height range (m) of every room type.
ROOM_HEIGHT = (2.0, 5.0)
#: Energy absorption range of the walls.
ABSORPTION = (0.2, 0.8)
SPEED_OF_SOUND = 343.0
_MIN_DISTANCE = 0.5
_PEAK = 0.99


@dataclass(frozen=True)
class RoomConfig:
    """How the rooms and RIRs of :func:`simulate_rirs` are drawn.

    Attributes:
        num_rooms: Rooms per room type.
        rirs_per_room: RIRs per room (each with its own source and microphone positions).
        sample_rate: Hz.
        absorption: Range of the walls' energy absorption coefficient, drawn per room.
        max_seconds: Longest RIR (s); shorter when the room's Sabine RT60 is.
        max_order: Highest image-method reflection order.
        wall_margin: Smallest distance (m) of a source or microphone from a wall (less in a room too
            small for it: a quarter of the dimension).
    """

    num_rooms: int = 200
    rirs_per_room: int = 100
    sample_rate: int = 16000
    absorption: tuple[float, float] = ABSORPTION
    max_seconds: float = 1.0
    max_order: int = 30
    wall_margin: float = 0.5

    def check(self) -> None:
        """Raises ValueError on an impossible setting."""
        low, high = self.absorption
        problems = []
        if self.num_rooms <= 0 or self.rirs_per_room <= 0:
            problems.append(f"num_rooms and rirs_per_room must be positive, got {self.num_rooms}, "
                            f"{self.rirs_per_room}")
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if not 0 < low <= high <= 1:
            problems.append(f"absorption must be a range within (0, 1], got {low}, {high}")
        if self.max_seconds <= 0 or self.max_order < 0 or self.wall_margin < 0:
            problems.append(f"max_seconds must be positive and max_order, wall_margin not negative, got "
                            f"{self.max_seconds}, {self.max_order}, {self.wall_margin}")
        if problems:
            raise ValueError("; ".join(problems))


def sabine_rt60(dims: Sequence[float], absorption: float) -> float:
    """Sabine's reverberation time (s) of a shoebox room: 0.161 V / (S a)."""
    length, width, height = dims
    volume = length * width * height
    surface = 2 * (length * width + length * height + width * height)
    return 0.161 * volume / (surface * absorption)


def _position(rng: np.random.Generator, dims: np.ndarray, margin: float) -> np.ndarray:
    margins = np.minimum(margin, dims / 4)
    return rng.uniform(margins, dims - margins)


def _draw_positions(rng: np.random.Generator, dims: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Source and microphone positions, redrawn (at most 100 times) until they are 0.5 m apart."""
    for _ in range(100):
        source, mic = _position(rng, dims, margin), _position(rng, dims, margin)
        if np.linalg.norm(source - mic) >= _MIN_DISTANCE:
            break
    return source, mic


def simulate_rir(
    dims: np.ndarray, absorption: float, source: np.ndarray, mic: np.ndarray, config: RoomConfig
) -> np.ndarray:
    """One RIR (float64, peak-normalised to 0.99) by the image method; see the module docstring."""
    import pyroomacoustics

    seconds = min(sabine_rt60(dims, absorption), config.max_seconds)
    order = min(config.max_order, math.ceil(SPEED_OF_SOUND * seconds / float(np.min(dims))) + 1)
    room = pyroomacoustics.ShoeBox(dims.tolist(), fs=config.sample_rate, materials=pyroomacoustics.Material(absorption),
                                   max_order=order, air_absorption=False)
    room.add_source(source.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(rir)))
    rir = rir[: direct + max(1, int(round(seconds * config.sample_rate)))]
    return rir * (_PEAK / np.max(np.abs(rir)))


def _simulate_type(room_type: str, type_dir: Path, seed: int, config: RoomConfig) -> int:
    rng = np.random.default_rng([seed, ROOM_TYPES.index(room_type)])
    low, high = ROOM_SIZES[room_type]
    rir_list, info = [], []
    for room_index in range(1, config.num_rooms + 1):
        dims = np.array([rng.uniform(low, high), rng.uniform(low, high), rng.uniform(*ROOM_HEIGHT)])
        absorption = float(rng.uniform(*config.absorption))
        room = f"Room{room_index:03d}"
        (type_dir / room).mkdir()
        for rir_index in range(1, config.rirs_per_room + 1):
            source, mic = _draw_positions(rng, dims, config.wall_margin)
            rir = simulate_rir(dims, absorption, source, mic, config)
            name = f"{room}-{rir_index:05d}"
            soundfile.write(type_dir / room / f"{name}.wav", rir, config.sample_rate, subtype="PCM_16")
            rir_list.append(f"--rir-id {room_type}-{name} --room-id {room_type}-{room} "
                            f"RIRS_NOISES/{SIMULATED}/{room_type}/{room}/{name}.wav\n")
            info.append("\t".join([f"{room_type}_{name}", "x".join(f"{value:.3f}" for value in dims),
                                   f"{absorption:.4f}", f"{sabine_rt60(dims, absorption):.4f}",
                                   ",".join(f"{value:.3f}" for value in source),
                                   ",".join(f"{value:.3f}" for value in mic)]) + "\n")
        logger.info("%s: room %d/%d simulated (%d RIRs)", room_type, room_index, config.num_rooms,
                    config.rirs_per_room)
    (type_dir / "rir_list").write_text("".join(rir_list), encoding="utf-8")
    header = "utt\troom_m\tabsorption\tsabine_rt60_s\tsource_m\tmic_m\n"
    (type_dir / "rir_info.tsv").write_text(header + "".join(info), encoding="utf-8")
    return len(rir_list)


def simulate_rirs(
    out_dir: PathLike,
    data_dir: PathLike,
    room_types: Sequence[str] = ("smallroom", "mediumroom"),
    seed: int = 0,
    config: RoomConfig | None = None,
) -> dict[str, SourceSummary]:
    """Simulates RIRs of the given room types and writes them with their data dirs (see the module docstring).

    Args:
        out_dir: Root of the RIR tree (the ``RIRS_NOISES`` equivalent); each type's folder is
            replaced as a whole, built aside first.
        data_dir: Parent of the data dirs ``rirs_<type>``.
        room_types: Types to simulate (default Kaldi's VoxCeleb choice: small and medium rooms).
        seed: Seed of the draws.
        config: Room and RIR settings (default :class:`RoomConfig`: RIRS_NOISES' 200 rooms x 100 RIRs).

    Returns:
        Data dir name -> what was written.

    Raises:
        ValueError: on an unknown room type or an impossible setting.
        ImportError: with the install hint, when pyroomacoustics is missing.
    """
    config = config or RoomConfig()
    config.check()
    unknown = [kind for kind in room_types if kind not in ROOM_TYPES]
    if unknown or not room_types:
        raise ValueError(f"unknown room type(s) {', '.join(unknown) or '(none given)'}; valid: {', '.join(ROOM_TYPES)}")
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError as error:
        raise ImportError("simulating RIRs needs pyroomacoustics: pip install -e '.[augment]'") from error
    out_dir = Path(out_dir)
    for room_type in room_types:
        with atomic_dir(out_dir / SIMULATED / room_type) as tmp:
            count = _simulate_type(room_type, tmp, seed, config)
        logger.info("Simulated %d %s RIRs in %s (seed %d)", count, room_type, out_dir / SIMULATED / room_type, seed)
    return prepare_rirs(out_dir, data_dir, room_types=room_types, real=False)
