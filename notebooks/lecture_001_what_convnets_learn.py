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
# # Lecture 001: what a ConvNet learns
#
# UvA Deep Learning, Lecture 4 "Convolutional Neural Networks". The thread: shared filters
# are convolutions, local connectivity, zero padding and hyper-parameters that do not fit,
# then what the trained network holds: its filters, its feature maps, what excites a unit
# (Zeiler & Fergus 2014), which pixels decide the class and the image a class likes best
# (Simonyan et al. 2014). A small LeNet-5 trained for two epochs on the bundled digits.

# %%
import tempfile

import torch

import cnnlab
from cnnlab.analysis.lectures import run_example

torch.set_num_threads(2)
RUNS = tempfile.mkdtemp(prefix="cnnlab-lecture-001-")

# %% [markdown]
# ## Shared 2-D filters are convolutions; hyper-parameters that do not click

# %%
print(run_example("shared-filter").render())
print(run_example("do-not-click").render())

# %% [markdown]
# ## A trained network to look into
# Snapshots after each epoch let us watch features evolve (`--snapshot-epochs 1,2`).

# %%
config = cnnlab.TrainConfig(model="lenet5", data="digits", epochs=2, optimizer="adam",
                            lr=0.003, out=RUNS, name="lenet5", progress=False, threads=2,
                            snapshot_epochs=[1, 2])
run = cnnlab.open_run(cnnlab.fit(config, log=lambda *_: None).run_dir)

# %% [markdown]
# ## Filters are learned
# `cnnlab visualize filters RUN`: red = positive weight, blue = negative, one shared scale.

# %%
cnnlab.visualize("filters", run)

# %% [markdown]
# ## Feature maps: from less to more abstract
# `cnnlab visualize maps RUN --index 3`

# %%
cnnlab.visualize("maps", run, index=3)

# %% [markdown]
# ## What excites a unit: the top 9 patches
# `cnnlab visualize top-patches RUN --units 0-5 --limit 200`

# %%
cnnlab.visualize("top-patches", run, units=list(range(6)), limit=200)

# %% [markdown]
# ## Do the activations occur in meaningful positions? Saliency and Grad-CAM

# %%
cnnlab.visualize("saliency", run)

# %% [markdown]
# ## Feature evolution over training
# `cnnlab visualize evolution RUN --limit 100`

# %%
cnnlab.visualize("evolution", run, limit=100)
