from .mt_adamw import MTAdamW

__all__ = ['MTAdamW']
