import re,sys
# instructions an element of each issue_budget kernel's loop body (8 elements a chunk), from nvdisasm -c
funcs={}; name=None
for line in open(sys.argv[1]):
    m=re.search(r'\.type\s+(\S+),@function',line)
    if m: name=m.group(1); funcs[name]=[]; continue
    m=re.match(r'\s+/\*([0-9a-f]+)\*/\s+(.*)',line)
    if m and name: funcs[name].append((int(m.group(1),16),m.group(2)))
    m=re.match(r'^(\.L_x_\d+):',line)
    if m and name: funcs[name].append((None,m.group(1)))
rows=[]
for f,ins in funcs.items():
    labels={}; addr=0; flat=[]
    for a,t in ins:
        if a is None: labels[t]=len(flat)
        else: flat.append((a,t))
    # the loop: the largest backward branch
    best=None
    for i,(a,t) in enumerate(flat):
        m=re.search(r'BRA\s+`?\(?(\.L_x_\d+)',t)
        if m and m.group(1) in labels and labels[m.group(1)]<=i:
            span=i-labels[m.group(1)]+1
            if best is None or span>best: best=span
    n=sum(1 for a,t in flat if 'NOP' not in t)
    body=best or n
    m=re.match(r'_Z4stepILi([48])ELi([012])ELi(\d+)ELi(\d)E',f)
    rows.append((int(m.group(1)),int(m.group(2)),int(m.group(3)),int(m.group(4)),body/8))
for b,o,k,d,e in sorted(rows):
    print(f"q{b} {['ffma','alu','mix'][o]:4} K={k:<3} depth {d} {e:6.1f} instr/elem in the loop")
