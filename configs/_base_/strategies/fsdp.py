# mmengine's FlexibleRunner with PyTorch FSDP: parameters, gradients and
# optimizer state are sharded over the processes, so an L-size backbone
# (configs/relation_detr/relation-detr_swin-l_8xb2-12e_coco.py) trains where
# one device cannot hold a replica. Add this file to a config's _base_ list
# and launch as usual (tools/dist_train.sh, torchrun or slurm with
# --launcher). Every block of at least 1e7 parameters becomes its own FSDP
# unit (torch's size_based_auto_wrap_policy); the rest is sharded by the
# root. Checkpoints hold full state dicts gathered to rank 0 (mmengine's
# 'full': one file with the model's own keys, which tools/test.py and
# --resume read). Without CUDA, tools/train.py runs the shards on the CPU
# (gloo) and gathers without CPU offload (torch 2.13 crashes offloading
# CPU tensors). tests/test_tools/test_fsdp.py checks that one FSDP step
# gives the parameters of one DDP step.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    state_dict_cfg=dict(
        state_dict_type='FULL_STATE_DICT',
        state_dict_config=dict(
            type='FullStateDictConfig', offload_to_cpu=True,
            rank0_only=True),
        optim_state_dict_config=dict(
            type='FullOptimStateDictConfig', offload_to_cpu=True,
            rank0_only=True)),
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=int(1e7))))
