_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
