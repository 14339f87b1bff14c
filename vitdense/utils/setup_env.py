import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every vitdense module so its registry entries exist.

    mmdet's and mmseg's modules are registered too, so a config of any of the
    three scopes resolves. With ``init_default_scope`` the current default
    scope becomes ``vitdense`` (as :func:`mmdet.utils.register_all_modules`
    does for ``mmdet``).
    """
    from mmdet.utils import register_all_modules as register_mmdet
    from mmseg.utils import register_all_modules as register_mmseg
    register_mmdet(init_default_scope=False)
    register_mmseg(init_default_scope=False)

    import vitdense.datasets  # noqa: F401
    import vitdense.engine  # noqa: F401
    import vitdense.evaluation  # noqa: F401
    import vitdense.models  # noqa: F401
    import vitdense.ops  # noqa: F401
    import vitdense.visualization  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None:
        DefaultScope.get_instance('vitdense', scope_name='vitdense')
    elif current.scope_name != 'vitdense':
        warnings.warn(f'The current default scope "{current.scope_name}" is '
                      'not "vitdense"; switching to a new "vitdense" scope.')
        name = f'vitdense-{datetime.datetime.now()}'
        DefaultScope.get_instance(name, scope_name='vitdense')
