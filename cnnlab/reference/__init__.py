"""Small, readable NumPy operators: the arithmetic ``cnnlab explain`` shows, checked against torch.

One function per operator and one per gradient; PyTorch's layouts and conventions, so
``tests/test_reference.py`` compares them with torch values and autograd gradients.
"""

from cnnlab.reference.conv import (
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    conv_transpose2d_backward,
    flip_kernel,
    output_size,
    pad2d,
)
from cnnlab.reference.dense import linear, linear_backward, relu, relu_backward
from cnnlab.reference.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    bed_of_nails,
    max_pool2d,
    max_pool2d_backward,
    max_unpool2d,
    max_unpool2d_backward,
    nearest_upsample,
    pool_output_size,
)

__all__ = [
    "avg_pool2d", "avg_pool2d_backward", "bed_of_nails", "conv2d", "conv2d_backward",
    "conv_transpose2d", "conv_transpose2d_backward", "flip_kernel", "linear", "linear_backward",
    "max_pool2d", "max_pool2d_backward", "max_unpool2d", "max_unpool2d_backward",
    "nearest_upsample", "output_size",
    "pad2d", "pool_output_size", "relu", "relu_backward",
]
