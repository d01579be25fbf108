"""The errors the command line reports in one line, and how any error becomes one line.

Every error a user can cause (an option, a file, a directory, the environment) is one of these or a
``ValueError`` naming what and where; the command line prints it as one line and exits with status 2.
"""

import errno


class NotWritable(ValueError):
    """A file or directory that cannot be created or written (read-only, no space, no permission)."""


class DirectoryInUse(FileExistsError):
    """A run or study directory that another command holds (see :mod:`~infodropout.train.ownership`)."""


#: Where Pyro appends its table of the trace's shapes to an error raised inside a model or guide.
_PYRO_TABLE = "Trace Shapes:"


def one_line(err: BaseException | str, limit: int | None = None) -> str:
    """The message of ``err`` as one line: Pyro's "Trace Shapes" table (which Pyro appends to an error
    raised inside a traced model or guide) dropped, whitespace runs (newlines included) made one space,
    cut at ``limit`` characters where one is given. An exception's message without text is its class name."""
    text = str(err).split(_PYRO_TABLE, 1)[0]
    text = " ".join(text.split())
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


def os_reason(err: OSError) -> str:
    """What an ``OSError`` says, without its file name (the caller names the file): ``strerror``, else
    the errno's name, else the message."""
    if err.strerror:
        return err.strerror
    if err.errno in errno.errorcode:
        return errno.errorcode[err.errno]
    return one_line(err)
