"""The live challenge: a random order of head movements, and reading the order a video actually shows.

Head pose comes from the landmarks (guard.likeness.analysis.head_pose). Left and right are the person's own, in a
recording that is not mirrored (what a camera records; a selfie preview is mirrored, the file is not): turning to
one's left turns the face towards the image's right (yaw > 0). Pitch is taken relative to the first frames, where
the instructions ask the person to look straight at the camera, because the absolute pitch from a generic 3D face
shifts with where the face sits in the picture.

Thresholds are hysteretic: a turn counts from 27 degrees of yaw (12 of pitch) and ends below 15 (6), so a pose
hovering at a threshold does not flicker; a move must hold for 2 sampled frames to count, so one mis-fitted frame
(a hand across the face) adds no move. Measured on head-pose-female.gif: the head turns reach 40-54 degrees of yaw,
frontal frames stay within 10."""

from __future__ import annotations

import secrets
from enum import StrEnum

import numpy as np

from guard.likeness.video import SampledFrame

TURN_YAW = 27.0
NEUTRAL_YAW = 15.0
LOOK_PITCH = 12.0
NEUTRAL_PITCH = 6.0
MIN_HOLD = 2
BASELINE_FRAMES = 5


class Move(StrEnum):
    turn_left = "turn_left"
    turn_right = "turn_right"
    look_up = "look_up"
    look_down = "look_down"


INSTRUCTIONS = {
    Move.turn_left: "turn your head to your left, then back to the camera",
    Move.turn_right: "turn your head to your right, then back to the camera",
    Move.look_up: "tilt your head up, then back to the camera",
    Move.look_down: "tilt your head down, then back to the camera",
}


HORIZONTAL = frozenset({Move.turn_left, Move.turn_right})
VERTICAL = frozenset({Move.look_up, Move.look_down})


def new_challenge(allowed: list[Move], length: int) -> list[Move]:
    """A random sequence of `length` moves from `allowed`, never the same move twice in a row (a repeat would read
    as one long move). Uses the `secrets` generator: the order must not be predictable.

    When `allowed` has both turns and tilts and the challenge is at least two moves long, every challenge has at
    least one of each: public footage of a person often shows them turning their head, far more rarely turning and
    nodding in a given order, so a challenge of turns only is the one to splice an answer for."""
    if len(set(allowed)) < 2 or length < 1:
        raise ValueError("a challenge needs at least two kinds of move and one move")
    axes = [axis for axis in (HORIZONTAL, VERTICAL) if axis & set(allowed)]
    while True:  # rejection sampling keeps every admissible sequence equally likely
        moves = _draw(allowed, length)
        if length < 2 or all(axis & set(moves) for axis in axes):
            return moves


def _draw(allowed: list[Move], length: int) -> list[Move]:
    moves: list[Move] = []
    for _ in range(length):
        choices = [move for move in dict.fromkeys(allowed) if not moves or move != moves[-1]]
        moves.append(secrets.choice(choices))
    return moves


def instructions(moves: list[Move]) -> list[str]:
    steps = ["Look straight into the camera"]
    steps += [f"{number}. {INSTRUCTIONS[move].capitalize()}" for number, move in enumerate(moves, start=1)]
    steps.append("End looking straight into the camera")
    return steps


def _classify(yaw: float, pitch: float, previous: str) -> str:
    if abs(yaw) >= TURN_YAW and abs(yaw) / TURN_YAW >= abs(pitch) / LOOK_PITCH:
        return Move.turn_left if yaw > 0 else Move.turn_right
    if abs(pitch) >= LOOK_PITCH:
        return Move.look_up if pitch > 0 else Move.look_down
    if abs(yaw) < NEUTRAL_YAW and abs(pitch) < NEUTRAL_PITCH:
        return "neutral"
    return previous


def observed_moves(frames: list[SampledFrame]) -> list[Move]:
    """The moves the video shows, in order: runs of one pose held for MIN_HOLD sampled frames; frames without
    exactly one face keep the current pose (the detector loses a face in full profile)."""
    single = [frame.faces[0].pose for frame in frames if len(frame.faces) == 1]
    if not single:
        return []
    frontal = [pose.pitch for pose in single if abs(pose.yaw) < NEUTRAL_YAW][:BASELINE_FRAMES]
    baseline = float(np.median(frontal)) if frontal else float(np.median([pose.pitch for pose in single]))
    runs: list[list] = []  # [state, length]
    state = "neutral"
    for pose in single:
        state = _classify(pose.yaw, pose.pitch - baseline, state)
        if runs and runs[-1][0] == state:
            runs[-1][1] += 1
        else:
            runs.append([state, 1])
    moves: list[Move] = []
    last = "neutral"
    for run_state, length in runs:
        if run_state == "neutral":
            last = "neutral"
        elif length >= MIN_HOLD and run_state != last:
            moves.append(Move(run_state))
            last = run_state
    return moves
