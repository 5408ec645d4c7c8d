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
# # Lecture 000: convolution, LeNet-5 and its errors
#
# CS 519 Deep Learning (Oregon State), "Convolutional Neural Networks". The lecture's thread:
# a 2-D convolution with zero padding worked entry by entry, why convolution needs far fewer
# weights than a fully connected layer, LeNet on handwritten digits, and "the 82 errors made by
# LeNet5" with the network's two best guesses. Each step below is a cnnlab command or its
# Python twin, on data that ships with cnnlab (scikit-learn's 8x8 digits), so it runs offline
# in well under a minute.

# %%
import tempfile

import torch

import cnnlab
from cnnlab.analysis.lectures import run_example

torch.set_num_threads(2)
RUNS = tempfile.mkdtemp(prefix="cnnlab-lecture-000-")

# %% [markdown]
# ## 2-D convolution with padding
# `cnnlab lectures padded-conv`: the slide's grid next to cnnlab's, every differing entry
# marked and explained (the slide's last entry is a typo).

# %%
print(run_example("padded-conv").render())

# %% [markdown]
# ## Dramatic reduction in the number of parameters
# `cnnlab lectures fc-vs-conv`: a fully connected layer on a 256x256x3 image against a
# convolutional one.

# %%
print(run_example("fc-vs-conv").render())

# %% [markdown]
# ## LeNet-5, layer by layer
# `cnnlab summary lenet5`: shapes, parameters and multiply-adds (the table renders inline).

# %%
cnnlab.summary(cnnlab.create("lenet5", num_classes=10, in_channels=1), (1, 32, 32))

# %% [markdown]
# ## Train it (one epoch on the digits)
# `cnnlab train --model lenet5 --data digits --epochs 1`; the opened run shows its epochs.

# %%
config = cnnlab.TrainConfig(model="lenet5", data="digits", epochs=1, optimizer="adam",
                            lr=0.003, out=RUNS, name="lenet5", progress=False, threads=2)
result = cnnlab.fit(config, log=lambda *_: None)
run = cnnlab.open_run(result.run_dir)
run  # noqa: B018 - the last expression is what the notebook shows

# %% [markdown]
# ## The errors, with the two best guesses
# `cnnlab visualize errors RUN`: each tile gives the true class, the prediction and the
# second guess with their probabilities (the Ciresan et al. slide's "best two guesses").

# %%
cnnlab.visualize("errors", run)

# %% [markdown]
# Which classes are confused with which: `cnnlab visualize confusion RUN` (`--normalize`
# also draws each row as fractions of its class).

# %%
cnnlab.visualize("confusion", run)
