"""Numpy kernels of the Flex (Select TF) TensorList ops the converter leaves in RNN loops.

With SELECT_TF_OPS and `_experimental_lower_tensor_list_ops = False`, a Keras loop keeps its
outputs in a TensorFlow TensorList: a VARIANT tensor made by FlexTensorListReserve, written
by FlexTensorListSetItem inside the WHILE body and read by FlexTensorListStack after it.
No runtime tflgraph drives runs them (LiteRT and TFLM have no Flex delegate), so these
kernels are what lets the reference interpreter compute such a model: the reference that
`lower-tensor-lists` and `optimize`'s fallback check compare with.

A list value is a 0-d object array holding a tuple of elements (numpy arrays, or None for an
element reserved but never set), so that it passes through WHILE operands like any value and
no kernel can change a list another op still reads. As in TensorFlow, an unset element reads
as zeros of the element shape (taken from the set elements, else from the element_shape
operand, else from the op's output tensor).
"""

from __future__ import annotations

import numpy as np

from tflgraph.reference.kernels import UnsupportedOp, as_ints


def as_list(items) -> np.ndarray:
    """A TensorList value: a 0-d object array holding the elements as a tuple."""
    value = np.empty((), object)
    value[()] = tuple(items)
    return value


def _items(value) -> tuple:
    items = np.asarray(value)[()] if isinstance(value, np.ndarray) else value
    if not isinstance(items, tuple):
        raise UnsupportedOp(f"expected a TensorList value, got {type(items).__name__}")
    return items


def _index(x, n: int) -> int:
    i = int(np.asarray(x).reshape(-1)[0])
    if not 0 <= i < n:
        raise IndexError(f"TensorList index {i} out of range for {n} elements")
    return i


def _element_shape(op, items: tuple, element_shape) -> tuple[int, ...]:
    """The shape an unset element reads as."""
    for x in items:
        if x is not None:
            return x.shape
    if element_shape is not None and all(d >= 0 for d in as_ints(element_shape)):
        return tuple(as_ints(element_shape))
    out = op.outputs[0].shape
    return tuple(out[1:]) if op.type.endswith("Stack") else tuple(out)


def _filled(op, items: tuple, element_shape) -> list[np.ndarray]:
    shape = _element_shape(op, items, element_shape)
    dtype = op.outputs[0].dtype or np.float32
    return [np.zeros(shape, dtype) if x is None else x for x in items]


def reserve(op, element_shape, num_elements):
    return as_list([None] * int(np.asarray(num_elements).reshape(-1)[0]))


def set_item(op, value, index, item):
    items = list(_items(value))
    items[_index(index, len(items))] = np.array(item)
    return as_list(items)


def get_item(op, value, index, element_shape=None):
    items = _items(value)
    i = _index(index, len(items))
    return _filled(op, items, element_shape)[i]


def stack(op, value, element_shape=None):
    items = _items(value)
    if not items:
        return np.zeros(op.outputs[0].shape, op.outputs[0].dtype or np.float32)
    return np.stack(_filled(op, items, element_shape))


FLEX_KERNELS = {
    "CUSTOM:FlexTensorListReserve": reserve,
    "CUSTOM:FlexTensorListSetItem": set_item,
    "CUSTOM:FlexTensorListGetItem": get_item,
    "CUSTOM:FlexTensorListStack": stack,
    "CUSTOM:FlexTensorListFromTensor": lambda op, x, element_shape=None: as_list(list(x)),
    "CUSTOM:FlexTensorListLength": lambda op, value: np.array(len(_items(value)), np.int32),
}
