# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 004: from bags of visual words to ConvNets, and their arithmetic
#
# Padova Cognitive Services, "Convolutional Neural Networks for Visual Recognition". The
# thread: the bag-of-visual-words baseline (`cnnlab bovw`, docs/BOVW.md), a recap of neural
# networks and counting their parameters, Gaussian smoothing as a convolution, the spatial
# arithmetic of convolution (strides, padding) and layer definitions. Each number from the
# slides is recomputed here; a small classifier closes with a lab-notebook report.

# %%
import tempfile

import torch

import cnnlab
from cnnlab.analysis.lectures import run_example

torch.set_num_threads(2)
RUNS = tempfile.mkdtemp(prefix="cnnlab-lecture-004-")

# %% [markdown]
# ## Counting parameters: the 3 -> 4 -> 4 -> 1 network

# %%
print(run_example("nn-size").render())

# %% [markdown]
# ## Gaussian smoothing is a convolution

# %%
print(run_example("gaussian").render())

# %% [markdown]
# ## A 3x3 filter on a 7x7 input at strides 1, 2, 3 (and padding)

# %%
print(run_example("spatial-7x7").render())
print(run_example("shrinking").render())

# %% [markdown]
# ## A small ConvNet and where it goes wrong
# `cnnlab train --model lenet5 --data digits --epochs 1`, `cnnlab evaluate RUN` (the scores
# render as a table), and `cnnlab visualize top-losses RUN`: the test images with the
# largest loss, with the most confused pairs. `cnnlab report RUN` puts all of it, and more,
# on one HTML page (docs/VISUALIZE.md).

# %%
run = cnnlab.open_run(cnnlab.fit(cnnlab.TrainConfig(
    model="lenet5", data="digits", epochs=1, optimizer="adam", lr=0.003, out=RUNS,
    name="lenet5", progress=False, threads=2), log=lambda *_: None).run_dir)
scores = cnnlab.evaluate_runs([run]).main
scores  # noqa: B018 - the last expression is what the notebook shows

# %%
cnnlab.visualize("top-losses", run, count=20)
