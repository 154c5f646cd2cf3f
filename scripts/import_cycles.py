#!/usr/bin/env python3
"""Fails if two source files import each other, directly or in a ring (lint)."""
import re,os,sys
files={}
for root,_,fs in os.walk('src'):
    for f in fs:
        if f.endswith('.rs'):
            p=os.path.join(root,f)
            mod=p[4:-3].replace('/mod','').replace('/','::')
            if mod in('lib','main'): mod='crate'
            files[mod]=open(p).read()
mods=set(files)
def resolve(cur, path):
    parts=path.split('::')
    if parts[0]=='crate': base=[]; parts=parts[1:]
    elif parts[0]=='super':
        base=cur.split('::')
        # file module: super is parent
        base=base[:-1]
        while parts and parts[0]=='super': parts=parts[1:]; 
        if path.startswith('super::super'): base=base[:-1]
    elif parts[0]=='self': base=cur.split('::'); parts=parts[1:]
    else: return None
    # longest prefix that is a module
    full=base+parts
    for n in range(len(full),0,-1):
        m='::'.join(full[:n])
        if m in mods: return m
    return None
edges={m:set() for m in mods}
for m,s in files.items():
    # strip test modules
    s=s.split('#[cfg(test)]')[0]
    for u in re.findall(r'(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+', s):
        t=resolve(m,u)
        if t and t!=m and not t.startswith(m+'::') and not m.startswith(t+'::'):
            edges[m].add(t)
# find cycles via Tarjan
index={};low={};st=[];on=set();res=[];i=[0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v]=low[v]=i[0];i[0]+=1;st.append(v);on.add(v)
    for w in edges[v]:
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        if len(comp)>1: res.append(comp)
for v in mods:
    if v not in index: sc(v)
for c in res: print("import cycle:", " -> ".join(sorted(c)))
sys.exit(1 if res else 0)
