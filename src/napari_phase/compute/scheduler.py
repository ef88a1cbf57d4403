"""Which dask scheduler computes lazy (dask) data: local threads or a cluster.

Every reduction of a lazy datacube (virtual images, centre of mass, the
mean pattern, the parallax bright-field stack) is a dask computation; it
runs on whatever scheduler is active. :func:`use_scheduler` chooses it for
a block of code::

    with use_scheduler('tcp://scheduler:8786'):   # a dask.distributed cluster
        result = dpc(cube)
    with use_scheduler('local'):                  # a LocalCluster here
        ...
    with use_scheduler(None):                     # local threads
        ...

dask.distributed is imported only when an address is given (it is the
optional ``napari-phase[distributed]`` dependency).
"""

from __future__ import annotations

from contextlib import contextmanager

#: The address that starts a LocalCluster on this machine.
LOCAL = 'local'
#: Seconds to wait for a remote scheduler to answer.
CONNECT_TIMEOUT = 10.0


class SchedulerError(OSError):
    """The dask scheduler asked for cannot be used (no dask.distributed,
    or no scheduler answers at the address)."""


@contextmanager
def use_scheduler(address: str | None = None,
                  timeout: float | None = None, **cluster_options):
    """Compute dask arrays on the scheduler at ``address`` inside the block.

    ``address``: a dask.distributed scheduler (``'tcp://host:8786'``,
    ``'host:8786'``), ``'local'`` for a new LocalCluster on this machine
    (``cluster_options`` go to ``LocalCluster``, e.g. ``n_workers=2,
    processes=False``), or None for the local threaded scheduler.
    ``timeout``: seconds to wait for a remote scheduler (default
    :data:`CONNECT_TIMEOUT`). Yields the
    ``distributed.Client`` (None for threads); a cluster started here is
    closed on exit. Raises :class:`SchedulerError` when dask.distributed
    is missing or the scheduler cannot be reached.
    """
    if cluster_options and address != LOCAL:
        raise TypeError(
            f'cluster options {sorted(cluster_options)} only apply to '
            f"address='{LOCAL}' (a LocalCluster started here)"
        )
    if address is None:
        import dask

        with dask.config.set(scheduler='threads'):
            yield None
        return
    distributed = _import_distributed(address)
    if address == LOCAL:
        options = {'dashboard_address': None} | cluster_options
        with distributed.LocalCluster(**options) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    with _connect(distributed, address, timeout or CONNECT_TIMEOUT) as client:
        yield client


def _import_distributed(address: str):
    try:
        import distributed
    except ImportError:
        raise SchedulerError(
            f'the dask scheduler {address!r} needs dask.distributed, which '
            "is not installed: pip install 'napari-phase[distributed]' (or "
            "'dask[distributed]')"
        ) from None
    return distributed


def _connect(distributed, address: str, timeout: float):
    try:
        return distributed.Client(address, timeout=f'{timeout}s')
    except (OSError, ValueError, TypeError) as error:
        raise SchedulerError(
            f'cannot reach the dask scheduler at {address!r} within '
            f'{timeout:g} s ({error}); start one with `dask scheduler` and '
            "`dask worker ADDRESS`, or use 'local' for a cluster on this "
            'machine'
        ) from None


def active_client():
    """The dask.distributed Client that computes dask arrays now, or None
    (threads, processes, or no dask.distributed)."""
    import dask.base

    scheduler = dask.base.get_scheduler()
    owner = getattr(scheduler, '__self__', None)
    if owner is None or type(owner).__module__.split('.')[0] != 'distributed':
        return None
    return owner
