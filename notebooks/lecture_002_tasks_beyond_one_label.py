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
# # Lecture 002: multi-label, segmentation, Inception and ResNet
#
# UBC CPSC 532S, "Convolutional Neural Networks (Part 3)". The thread: beyond one label per
# image (multi-label categorisation, semantic segmentation), then the architectures that made
# deep nets work: GoogLeNet's 1x1 bottlenecks, vanishing gradients and ResNet, and
# up-sampling for fully convolutional segmentation. Scenes of one or two digits
# (`digit-scenes`, generated offline) keep every training step to seconds.

# %%
import tempfile

import torch

import cnnlab
from cnnlab.analysis.lectures import run_example

torch.set_num_threads(2)
RUNS = tempfile.mkdtemp(prefix="cnnlab-lecture-002-")
SCENES = "digit-scenes:n=120"

# %% [markdown]
# ## Inception: the 1x1 bottleneck saves most of the multiply-adds

# %%
print(run_example("inception-saving").render())

# %% [markdown]
# ## Vanishing gradients through a sigmoid chain, and ResNet-152's depth

# %%
print(run_example("vanishing-gradient").render())
print(run_example("resnet-152").render())

# %% [markdown]
# ## Multi-label categorisation: K yes/no answers per image
# `cnnlab train --task multilabel --data digit-scenes:n=120 --model lenet5`; its curves
# plot the mean average precision, the metric that picks the best checkpoint.

# %%
multilabel = cnnlab.fit(cnnlab.TrainConfig(
    task="multilabel", data=SCENES, model="lenet5", model_options={"activation": "relu"},
    epochs=1, batch_size=16, optimizer="adam", lr=0.003, out=RUNS, name="multilabel",
    progress=False, threads=2), log=lambda *_: None)
cnnlab.visualize("curves", multilabel.run_dir)

# %% [markdown]
# The scenes whose predicted label set is wrong (`cnnlab visualize errors RUN --threshold
# 0.3`: a lower threshold names more classes).

# %%
cnnlab.visualize("errors", multilabel.run_dir, threshold=0.3)

# %% [markdown]
# ## Semantic segmentation: a class per pixel
# A small fully convolutional net (Long et al. 2015); each class has its colour, named in
# the legend under the panel.

# %%
segment = cnnlab.fit(cnnlab.TrainConfig(
    task="segment", data=SCENES, model="fcn", model_options={"widths": [8, 16]}, epochs=1,
    batch_size=16, optimizer="adam", lr=0.003, out=RUNS, name="segment", progress=False,
    threads=2), log=lambda *_: None)
cnnlab.visualize("segmentation", segment.run_dir, count=4)

# %% [markdown]
# Which class each class's pixels are given (`cnnlab visualize confusion RUN`), background
# included.

# %%
cnnlab.visualize("confusion", segment.run_dir, normalize=True)
