"""What people say: topic scripts for customer chats, group chats, supplier groups and
one-to-one chats, as templates with ``{fill_in}`` fields.

A script is a list of steps; each step names who speaks (a role letter), how likely the
step is, and the alternative sentences. Fill-ins (``{order}``, ``{phone}``, ``{address}``…)
are drawn once per session, so the buyer's order number is the one the agent repeats.
Personal data shows up at realistic rates (changing an address, invoices, customs
clearance, refunds to a bank card), which is what makes some messages high-sensitivity.

Roles: customer chats ``C`` buyer, ``S`` agent; groups ``L`` lead (manager), ``M`` another
member; supplier groups ``V`` supplier contact, ``U`` one of ours; one-to-one ``A`` the
one who starts, ``B`` the other.
"""
