"""The error every model lookup raises, in a module of its own: the registry raises it and the manifest check
subclasses it (a damaged folder is a model that cannot be found as written), and neither imports the other
at module level."""


class ModelNotFoundError(LookupError):
    """The name is no alias, no local folder and not something the hub could serve."""
