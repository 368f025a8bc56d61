"""Simulates room impulse responses (pyroomacoustics' image method) in the RIRS_NOISES layout, and their data dirs.

Writes ``<out-dir>/simulated_rirs/<type>/Room*/Room*-*.wav`` (+ ``rir_list``, ``rir_info.tsv``) and
``<data-dir>/rirs_<type>``; one seed gives byte-identical files (see
:mod:`speakernet.data.augment.simulate`). Needs the ``augment`` extra (``pip install -e '.[augment]'``)::

    python -m speakernet.bin.simulate_rirs --out-dir rirs --data-dir data --num-rooms 20 --rirs-per-room 10
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.augment.simulate import ABSORPTION, RoomConfig, simulate_rirs
from speakernet.utils.logging import setup_logging


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(item) for item in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got '{text}'") from None
    return low, high


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    defaults = RoomConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", required=True, help="root of the RIR tree (each room type's folder replaced)")
    parser.add_argument("--data-dir", required=True, help="parent of the data dirs rirs_<type>")
    parser.add_argument("--room-types", default="smallroom,mediumroom",
                        help="comma-separated room types (default %(default)s: Kaldi's VoxCeleb choice)")
    parser.add_argument("--num-rooms", type=int, default=defaults.num_rooms,
                        help="rooms per type (default %(default)s, as RIRS_NOISES)")
    parser.add_argument("--rirs-per-room", type=int, default=defaults.rirs_per_room,
                        help="RIRs per room (default %(default)s, as RIRS_NOISES)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (default %(default)s)")
    parser.add_argument("--sample-rate", type=int, default=defaults.sample_rate, help="Hz (default %(default)s)")
    parser.add_argument("--absorption", type=_range, default=ABSORPTION,
                        help="LOW,HIGH range of the walls' energy absorption (default 0.2,0.8)")
    parser.add_argument("--max-seconds", type=float, default=defaults.max_seconds,
                        help="longest RIR in seconds (default %(default)s)")
    parser.add_argument("--max-order", type=int, default=defaults.max_order,
                        help="highest reflection order (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the simulation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    room_types = [kind.strip() for kind in args.room_types.split(",") if kind.strip()]

    def action() -> None:
        config = RoomConfig(num_rooms=args.num_rooms, rirs_per_room=args.rirs_per_room, sample_rate=args.sample_rate,
                            absorption=args.absorption, max_seconds=args.max_seconds, max_order=args.max_order)
        simulate_rirs(args.out_dir, args.data_dir, room_types=room_types, seed=args.seed, config=config)

    return run_stage(action, errors={ImportError: 1})


if __name__ == "__main__":
    sys.exit(main())
