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
# # Lecture 003: the X's and O's ConvNet, number by number
#
# LUMS Deep Learning, Week 6 "Convolutional Neural Network". The thread: what a computer sees
# (a grid of +-1), filtering as matching, trying every match (convolution), one image
# becoming a stack of filtered images, pooling, ReLU, and the fully connected vote; then the
# output-size formula. Every slide number is recomputed by cnnlab and compared.

# %%
import tempfile

import torch

import cnnlab
from cnnlab.analysis.lectures import run_example

torch.set_num_threads(2)
RUNS = tempfile.mkdtemp(prefix="cnnlab-lecture-003-")

# %% [markdown]
# ## What computers see, and filtering as matching

# %%
print(run_example("x-image").render())
print(run_example("filtering").render())

# %% [markdown]
# ## Convolution: trying every possible match; one image becomes a stack

# %%
print(run_example("every-match").render())

# %% [markdown]
# ## Pooling and ReLU layers

# %%
print(run_example("pooling").render())
print(run_example("relu-layer").render())

# %% [markdown]
# ## Output size: ten 5x5 filters with padding 2 on 32x32x3

# %%
print(run_example("conv-output-size").render())

# %% [markdown]
# ## Train the toy ConvNet on X's and O's
# `cnnlab train --model xonet --data xo`: 128 weights; its training curves per step, and
# its filters next to the slide's three diagonal and cross features.

# %%
run = cnnlab.fit(cnnlab.TrainConfig(model="xonet", data="xo", epochs=3, batch_size=16,
                                    optimizer="adam", lr=0.01, out=RUNS, name="xonet",
                                    progress=False, threads=2), log=lambda *_: None)
cnnlab.visualize("curves", run.run_dir)

# %%
cnnlab.visualize("filters", run.run_dir)
