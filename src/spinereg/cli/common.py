"""Options shared by subcommands."""

from __future__ import annotations

import argparse


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log details; show tracebacks on errors")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def new_parser(sub, name: str, help_: str, description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_, description=description or help_)
    add_common(p)
    return p


def add_landmarks(parser: argparse.ArgumentParser, whose: str = "") -> None:
    """-l / --ldisc / --lrootlet (exactly one), values as the PAM50 label files."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("-l", "--labels", help=f"vertebral body labels{whose} (values as PAM50_label_body, C3 = 3)")
    g.add_argument("--ldisc", help=f"disc labels{whose} (values as PAM50_label_disc, C2/C3 = 3)")
    g.add_argument("--lrootlet", help=f"rootlet segmentation{whose} (values = spinal levels)")


def add_template(parser: argparse.ArgumentParser, contrast_help: str = "image contrast") -> None:
    parser.add_argument("-t", "--template", default="PAM50", help="PAM50, MNI-Poly-AMU, PAM50_small or a folder")
    parser.add_argument("-c", "--contrast", default="t2", choices=["t1", "t2", "t2s"], help=contrast_help)
