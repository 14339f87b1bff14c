_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
