_base_ = 'mmseg::_base_/schedules/schedule_80k.py'
