"""CIFAR-100 class subsets (`dataset.classes`): by fine label, by coarse superclass, or by a
named subset; the chosen images keep their fine labels, renumbered 0..k-1 in the order of
the fine label names, so the model's head has exactly k outputs.

The names are CIFAR-100's own (its `meta` file's `fine_label_names` and
`coarse_label_names`, both in alphabetical order, which is the label order); the table below
is the superclass listing of the CIFAR site (https://www.cs.toronto.edu/~kriz/cifar.html).
No fine name is also a superclass name, so one list may mix both. The loader maps names to
labels through the data set's own `meta` file, and checks it against this table.
"""

from __future__ import annotations

from typing import Any

from trainers.errors import did_you_mean

SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
FINE = tuple(sorted(n for names in SUPERCLASSES.values() for n in names))  # label i = FINE[i]
COARSE = tuple(sorted(SUPERCLASSES))

# Report 002 §2 fine-tunes on "two subsets of CIFAR-100" whose classes it does not list
# ("class1 and class 2"), chosen to be "similar to the pretrained data". These are two
# 10-class subsets close to CIFAR-10's two halves: its vehicles (airplane, automobile, ship,
# truck) and its animals (cat, deer, dog, horse, ...). docs/grids.md says why.
SUBSETS: dict[str, tuple[str, ...]] = {
    "vehicles": ("vehicles_1", "vehicles_2"),
    "large_animals": ("large_carnivores", "large_omnivores_and_herbivores"),
}


def fine_names(classes: Any) -> list[str]:
    """The fine class names `classes` selects, in label order (a named subset, or a list
    of fine names, fine label numbers and superclass names); ValueError if one is unknown."""
    items = SUBSETS[classes] if isinstance(classes, str) and classes in SUBSETS else classes
    if isinstance(items, str):
        raise ValueError(
            f"unknown subset '{items}'{did_you_mean(items, SUBSETS)}; named subsets: "
            f"{', '.join(SUBSETS)} (or give a list of classes or superclasses)"
        )
    out: set[str] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(FINE):
            out.add(FINE[item])
        elif item in SUPERCLASSES:
            out.update(SUPERCLASSES[item])
        elif item in FINE:
            out.add(item)
        else:
            hint = did_you_mean(item, FINE + COARSE)
            raise ValueError(
                f"unknown CIFAR-100 class or superclass {item!r}{hint} (fine labels are 0-99)"
            )
    return sorted(out)


def check_classes(v: Any) -> tuple[str | None, Any]:
    """`dataset.classes`' checker: null (all classes), a named subset, or a non-empty list
    of fine names, fine label numbers and superclass names. A list is kept in a canonical
    form (sorted names, numbers as names): one subset, one cell key."""
    if v is None:
        return None, v
    if not isinstance(v, (str, list)) or (isinstance(v, list) and not v):
        return f"expected a named subset or a non-empty list of classes, got {v!r}", v
    try:
        names = fine_names(v)
    except ValueError as e:
        return str(e), v
    if len(names) < 2:
        return f"a subset needs at least 2 classes, got {names}", v
    if isinstance(v, str):
        return None, v
    picked = {FINE[i] if isinstance(i, int) else i for i in v}
    return None, sorted(picked)


def label_map(classes: Any, meta_names: list[str]) -> list[int]:
    """The data set's fine label numbers (by its `meta` names) of the subset, in the new
    label order: new label j is old label `label_map(...)[j]`."""
    if list(meta_names) != list(FINE):
        raise ValueError("its meta file's fine_label_names are not CIFAR-100's 100 classes")
    return [meta_names.index(n) for n in fine_names(classes)]


def read_fine_names(path) -> list[str]:
    """`fine_label_names` of a CIFAR-100 `meta` file (str or bytes keys and names, as the
    official Python 2 pickles and re-pickled copies have them)."""
    import pickle

    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    meta = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in meta.items()}
    return [n.decode("latin1") if isinstance(n, bytes) else n for n in meta["fine_label_names"]]


def select(classes: Any, meta_path, train_x, train_y, test_x, test_y):
    """The images of the subset `classes`, labels renumbered 0..k-1: (train_x, train_y,
    test_x, test_y, k) as numpy arrays; GridError naming dataset.classes if the data set's
    meta file does not list CIFAR-100's classes."""
    import numpy as np

    from trainers.errors import GridError

    try:
        old = label_map(classes, read_fine_names(meta_path))
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise GridError(
            f"dataset.classes: cannot read the class names of {meta_path} ({e})"
        ) from None
    lookup = np.full(100, -1, dtype=np.int64)
    lookup[old] = np.arange(len(old))
    keep_train, keep_test = lookup[train_y] >= 0, lookup[test_y] >= 0
    return (
        train_x[keep_train],
        lookup[train_y[keep_train]],
        test_x[keep_test],
        lookup[test_y[keep_test]],
        len(old),
    )
