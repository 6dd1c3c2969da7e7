"""Demo data: a Chinese e-commerce company with its people and chat records, at any volume.

``seed_demo`` builds 清风电商 (company → regions → stores → teams), the named demo sign-ins
plus generated staff and managers, and ``messages`` chat messages spread over the last
~180 days in customer chats, group chats, supplier groups and one-to-one chats. Every
message is classified and encrypted the way the store does it. The same ``seed`` gives
the same organisation, conversations and texts (ciphertexts differ: nonces are random).

Used by ``manage.py seed_demo``; see docs/performance.md for measured rates.
"""
