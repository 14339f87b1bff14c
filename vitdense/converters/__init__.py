"""Checkpoint converters: official and third-party key layouts -> vitdense.

Model files hold models; the conversion of other codebases' checkpoints
lives here, one module per family (HF transformers' ``modeling_x.py`` /
``convert_x.py`` split), and every converter reads files through the one
safe reader in :mod:`vitdense.converters.io`. The command-line tools in
``tools/model_converters/`` are thin wrappers over these modules.
"""
from .crossformer import convert_crossformer
from .depth_anything import (convert_depth_anything,
                             convert_depth_anything_checkpoint,
                             infer_depth_anything_settings,
                             load_depth_anything_state_dict)
from .io import (CheckpointLayoutError, PickledObjectsError,
                 backbone_state_dict, check_layout, converter_main,
                 exit_on_refusal, open_checkpoint, read_checkpoint,
                 save_state_dict)
from .kmax import convert_kmax, convert_kmax_backbone
from .monodino_detr import (convert_monodetr, convert_monodino_detr,
                            unwrap_monodino_detr)
from .relation_detr import (convert_relation_detr, convert_relation_detr_hf,
                            convert_relation_detr_official,
                            detect_relation_detr_layout)
from .rmt import convert_rmt
from .swin import convert_swin_checkpoint, infer_swin_arch
from .vidt import (convert_swin_ram_checkpoint, convert_vidt_backbone,
                   infer_swin_ram_settings)
from .vit_comer import (convert_vit_comer, convert_vit_comer_checkpoint,
                        convert_vit_to_vit_comer, infer_vit_comer_settings,
                        load_vit_comer_state_dict)

__all__ = [
    'CheckpointLayoutError', 'PickledObjectsError', 'read_checkpoint',
    'open_checkpoint', 'backbone_state_dict', 'check_layout',
    'save_state_dict', 'exit_on_refusal', 'converter_main',
    'convert_crossformer', 'convert_depth_anything',
    'convert_depth_anything_checkpoint', 'infer_depth_anything_settings',
    'load_depth_anything_state_dict', 'convert_monodino_detr',
    'unwrap_monodino_detr', 'convert_monodetr',
    'convert_rmt', 'convert_swin_checkpoint', 'infer_swin_arch',
    'convert_vidt_backbone', 'infer_swin_ram_settings',
    'convert_swin_ram_checkpoint',
    'convert_vit_comer', 'convert_vit_comer_checkpoint',
    'convert_vit_to_vit_comer', 'infer_vit_comer_settings',
    'load_vit_comer_state_dict', 'convert_relation_detr',
    'convert_relation_detr_official', 'convert_relation_detr_hf',
    'detect_relation_detr_layout', 'convert_kmax', 'convert_kmax_backbone'
]
