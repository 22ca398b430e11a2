"""ECI-Profile: steer pods onto virtual nodes (virtual-kubelet, Alibaba Cloud ECI) by Selector.

Cluster admins declare ``Selector`` resources (``eci.aliyun.com``); pods that match get a
scheduling policy and, when they run on a virtual node, extra annotations and labels.
"""
