from .dummy_swin import DummySwin

__all__ = ['DummySwin']
