"""Reading, fetching and preparing Fashion-MNIST."""


class DataError(ValueError):
    """The data could not be found, or is not the data it claims to be."""
