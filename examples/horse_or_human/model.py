"""The classic horse-or-human CNN, with its augmentation as Keras layers."""

import math

import keras


def augmentation() -> keras.Sequential:
    """Builds the classic recipe's random augmentation, as Keras layers.

    The recipe's `ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
    height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
    horizontal_flip=True, fill_mode="nearest")`, one layer per transform.
    Its `shear_range` is an angle in degrees, so 0.2 is a shear factor of
    tan(0.2 deg), about 0.0035; its zoom scales height and width separately.
    Pixels are sampled from the nearest source pixel (the recipe used
    bilinear): bilinear sampling is up to 20 times slower on the JAX and
    PyTorch CPU backends. The layers act only in training, on the backend's
    device.

    Returns:
        A `keras.Sequential` named `"augmentation"`.

    Example:

    >>> images = np.random.uniform(size=(2, 32, 32, 3))
    >>> tuple(augmentation()(images, training=True).shape)
    (2, 32, 32, 3)
    """
    fill = {"fill_mode": "nearest", "interpolation": "nearest"}
    return keras.Sequential(
        [
            keras.layers.RandomRotation(40 / 360, **fill),
            keras.layers.RandomTranslation(0.2, 0.2, **fill),
            keras.layers.RandomShear(x_factor=math.tan(math.radians(0.2)), **fill),
            keras.layers.RandomZoom(0.2, 0.2, **fill),
            keras.layers.RandomFlip("horizontal"),
        ],
        name="augmentation",
    )


def build_model(
    image_size: int | tuple[int, int] = 300, *, augment: bool = True
) -> keras.Sequential:
    """Builds the classic horse-or-human convolutional network.

    Conv2D(16) MaxPool | Conv2D(32) Dropout MaxPool | Conv2D(64) Dropout
    MaxPool | Flatten Dropout Dense(512) Dense(1, sigmoid), on RGB inputs in
    [0, 1], with `augmentation()` in front.

    Args:
        image_size: Input size: an int for square images, or
            `(height, width)`; at least 22 pixels.
        augment: Whether to put the random augmentation in front.

    Returns:
        An uncompiled `keras.Sequential` that outputs P(human).

    Example:

    >>> model = build_model(64)
    >>> model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    """
    height, width = (
        (image_size, image_size) if isinstance(image_size, int) else image_size
    )
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((height, width, 3)),
            *([augmentation()] if augment else []),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Dropout(0.5),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Dropout(0.5),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(512, activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="horse_or_human",
    )
