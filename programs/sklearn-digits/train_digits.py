#!/usr/bin/env python3
"""Trains scikit-learn's MLPClassifier on the handwritten digits, from random weights.

Usage: train_digits.py [DATA [OUTPUT_DIR]]  (defaults /inputs/digits.csv and /outputs; DATA may
be a directory holding digits.csv, as a job mounts one at /inputs).

The data and split are those of programs/ml-train: 64 pixels (0-16) and a label per row, every
fifth row (0-based index i % 5 == 4) held out. Writes metrics.json (held_out_accuracy and the
other field names of ml-train's metrics, so the same tolerance verifies either) and the model as
model.pickle. No fixed seed: the seed is drawn from the host's entropy and reported, so two runs
differ, as a nondeterministic job's do.
"""

import json
import os
import pickle
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss
from sklearn.neural_network import MLPClassifier

HOLD_OUT_EVERY = 5
FEATURES = 64
MAX_PIXEL = 16.0
HIDDEN = 32
EPOCHS = 60
LEARNING_RATE = 0.01
BATCH_SIZE = 32


def load(path):
    if os.path.isdir(path):
        path = os.path.join(path, "digits.csv")
    rows = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    if rows.shape[1] != FEATURES + 1:
        sys.exit(f"train_digits: {path}: expected {FEATURES + 1} columns, found {rows.shape[1]}")
    held = np.arange(len(rows)) % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1
    x, y = rows[:, :FEATURES] / MAX_PIXEL, rows[:, FEATURES].astype(int)
    return x[~held], y[~held], x[held], y[held]


def main(argv):
    data = argv[1] if len(argv) > 1 else "/inputs/digits.csv"
    outputs = argv[2] if len(argv) > 2 else "/outputs"
    train_x, train_y, held_x, held_y = load(data)
    seed = int.from_bytes(os.urandom(4), "little")
    model = MLPClassifier(
        hidden_layer_sizes=(HIDDEN,),
        solver="adam",
        learning_rate_init=LEARNING_RATE,
        batch_size=BATCH_SIZE,
        max_iter=EPOCHS,
        random_state=seed,
    )
    started = time.monotonic()
    # A fixed epoch count, as ml-train's: stopping before convergence is the point, not a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(train_x, train_y)
    seconds = time.monotonic() - started
    classes = list(range(10))
    metrics = {
        "model": f"sklearn-mlp-{FEATURES}-{HIDDEN}-10",
        "held_out_accuracy": float(accuracy_score(held_y, model.predict(held_x))),
        "held_out_loss": float(log_loss(held_y, model.predict_proba(held_x), labels=classes)),
        "train_loss": float(log_loss(train_y, model.predict_proba(train_x), labels=classes)),
        "epochs": int(model.n_iter_),
        "train_rows": int(len(train_y)),
        "held_out_rows": int(len(held_y)),
        "learning_rate": LEARNING_RATE,
        "batch_size": BATCH_SIZE,
        "seed": seed,
        "seed_source": "host",
        "train_seconds": round(seconds, 3),
        "sklearn_version": __import__("sklearn").__version__,
    }
    os.makedirs(outputs, exist_ok=True)
    with open(os.path.join(outputs, "model.pickle"), "wb") as f:
        pickle.dump(model, f)
    with open(os.path.join(outputs, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    print(
        f"trained {metrics['model']}: {metrics['epochs']} epochs, seed {seed} (host), held-out accuracy "
        f"{metrics['held_out_accuracy']:.4f} on {metrics['held_out_rows']} rows, {seconds:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
